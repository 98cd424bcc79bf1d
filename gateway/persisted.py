"""Persisted operations: Apollo's automatic persisted queries (APQ) and trusted documents.

A request names its document three ways besides sending its text: ``documentId`` (or
Relay's ``doc_id``) looks it up in the manifest loaded at start-up; ``extensions.
persistedQuery.sha256Hash`` looks it up among the manifest's documents (by the SHA-256 of
their text) and then in the APQ cache. The APQ cache only ever holds documents that went
through parsing, validation and the query limits without a request error (the view
registers them after execution), so a caller cannot fill it cheaply with garbage; it is a
bounded LRU. With ``only_persisted`` nothing but a manifest document runs.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
from graphql import GraphQLSyntaxError, parse

APOLLO_FORMAT = "apollo-persisted-query-manifest"
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# The GraphQL-over-HTTP draft's prefixed form of a document id.
SHA256_PREFIX = "sha256:"
NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
REQUIRED = "PERSISTED_QUERY_REQUIRED"
BAD_USER_INPUT = "BAD_USER_INPUT"
# Apollo Client retries with the full text on exactly this message.
NOT_FOUND_MESSAGE = "PersistedQueryNotFound"
MAX_ID_CHARS = 256


class ManifestError(ValueError):
    """A manifest that cannot be used, worded for the operator."""


class PersistedRefusal(Exception):
    """A persisted-operation request refused before anything executes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Manifest:
    """Trusted documents by id, and the same documents by the SHA-256 of their text."""

    by_id: Mapping[str, str]
    by_hash: Mapping[str, str]

    @classmethod
    def of(cls, documents: Mapping[str, str]) -> Manifest:
        by_hash = {sha256_hex(body): body for body in documents.values()}
        return cls(MappingProxyType(dict(documents)), MappingProxyType(by_hash))


def load_manifest(path: Path) -> Manifest:
    """Relay's (``{"ID": "text"}``) or Apollo's manifest; every document must parse."""
    try:
        raw = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path.name} must be a JSON object")
    documents = _apollo(raw, path) if raw.get("format") == APOLLO_FORMAT else _relay(raw, path)
    if not documents:
        raise ManifestError(f"{path.name} holds no documents")
    for doc_id, body in documents.items():
        try:
            parse(body)
        except GraphQLSyntaxError as exc:
            raise ManifestError(
                f"{path.name}: document {doc_id!r} is not valid GraphQL: {exc.message}"
            ) from None
    return Manifest.of(documents)


def _relay(raw: dict[str, Any], path: Path) -> dict[str, str]:
    for key, value in raw.items():
        if not isinstance(value, str) or not key or len(key) > MAX_ID_CHARS:
            raise ManifestError(
                f'{path.name}: not a Relay manifest ({{"ID": "query text", ...}}) nor an '
                f'Apollo one ("format": "{APOLLO_FORMAT}"): entry {key[:80]!r}'
            )
    return dict(raw)


def _apollo(raw: dict[str, Any], path: Path) -> dict[str, str]:
    if raw.get("version") != 1:
        raise ManifestError(f"{path.name}: only version 1 of {APOLLO_FORMAT} is supported")
    operations = raw.get("operations")
    if not isinstance(operations, list):
        raise ManifestError(f"{path.name}: operations must be a list")
    documents: dict[str, str] = {}
    for index, op in enumerate(operations):
        if not isinstance(op, dict):
            raise ManifestError(f"{path.name}: operations[{index}] must be an object")
        doc_id, body = op.get("id"), op.get("body")
        if not isinstance(doc_id, str) or not doc_id or len(doc_id) > MAX_ID_CHARS:
            raise ManifestError(f"{path.name}: operations[{index}].id must be a short string")
        if not isinstance(body, str):
            raise ManifestError(f"{path.name}: operations[{index}].body must be a string")
        if documents.get(doc_id, body) != body:
            raise ManifestError(f"{path.name}: id {doc_id!r} names two different documents")
        documents[doc_id] = body
    return documents


class ApqCache:
    """A bounded LRU of hash -> document text (one per process)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._documents: OrderedDict[str, str] = OrderedDict()

    def get(self, digest: str) -> str | None:
        text = self._documents.get(digest)
        if text is not None:
            self._documents.move_to_end(digest)
        return text

    def put(self, digest: str, text: str) -> None:
        if self.size < 1:
            return
        self._documents[digest] = text
        self._documents.move_to_end(digest)
        while len(self._documents) > self.size:
            self._documents.popitem(last=False)

    def __len__(self) -> int:
        return len(self._documents)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The document a request runs, and the APQ entry to remember once it ran cleanly."""

    query: str | None
    register: tuple[str, str] | None = None


class PersistedOperations:
    """Decides which document a request runs (or refuses it): see the module docstring."""

    def __init__(
        self,
        *,
        apq_cache_size: int = 1000,
        manifest: Manifest | None = None,
        only_persisted: bool = False,
    ) -> None:
        self.cache = ApqCache(apq_cache_size)
        self.manifest = manifest
        self.only_persisted = only_persisted

    def resolve(
        self, query: str | None, extensions: Mapping[str, Any] | None, document_id: object
    ) -> Resolved:
        persisted = (extensions or {}).get("persistedQuery")
        if document_id is not None:
            if query is not None or persisted is not None:
                raise PersistedRefusal(
                    BAD_USER_INPUT, "send either documentId or a query, not both"
                )
            return Resolved(self._by_document_id(document_id))
        if persisted is not None:
            return self._apq(query, persisted)
        if self.only_persisted and query is not None:
            raise PersistedRefusal(
                REQUIRED, "this gateway runs persisted documents only: send a documentId"
            )
        return Resolved(query)

    def _by_document_id(self, document_id: object) -> str:
        if not isinstance(document_id, str) or not document_id:
            raise PersistedRefusal(BAD_USER_INPUT, "documentId must be a non-empty string")
        if self.manifest is not None:
            text = self.manifest.by_id.get(document_id)
            if text is None and document_id.startswith(SHA256_PREFIX):
                text = self.manifest.by_hash.get(document_id[len(SHA256_PREFIX) :].lower())
            if text is not None:
                return text
        raise PersistedRefusal(NOT_FOUND, "no persisted document has this documentId")

    def _apq(self, query: str | None, persisted: object) -> Resolved:
        if not isinstance(persisted, dict):
            raise PersistedRefusal(BAD_USER_INPUT, "extensions.persistedQuery must be an object")
        version = persisted.get("version")
        if version != 1 or isinstance(version, bool):
            raise PersistedRefusal(BAD_USER_INPUT, "persistedQuery.version must be 1")
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise PersistedRefusal(
                BAD_USER_INPUT, "persistedQuery.sha256Hash must be 64 hexadecimal digits"
            )
        digest = digest.lower()
        trusted = self.manifest.by_hash.get(digest) if self.manifest is not None else None
        if query is not None and sha256_hex(query) != digest:
            raise PersistedRefusal(
                BAD_USER_INPUT, "persistedQuery.sha256Hash is not the SHA-256 of the query"
            )
        if trusted is not None:
            return Resolved(trusted)
        if self.only_persisted:
            if query is None:
                raise PersistedRefusal(NOT_FOUND, NOT_FOUND_MESSAGE)
            raise PersistedRefusal(
                REQUIRED, "this gateway runs persisted documents only: send a documentId"
            )
        if self.cache.size < 1:
            raise PersistedRefusal(NOT_SUPPORTED, "PersistedQueryNotSupported")
        if query is None:
            cached = self.cache.get(digest)
            if cached is None:
                raise PersistedRefusal(NOT_FOUND, NOT_FOUND_MESSAGE)
            return Resolved(cached)
        return Resolved(query, register=(digest, query))

    def register(self, entry: tuple[str, str]) -> None:
        """Remembers a document that ran without a request error."""
        self.cache.put(*entry)
