"""GraphiQL's third-party files (GraphiQL, React, React DOM): pinned in a lock file, fetched
from an npm registry by ``tokengate graphiql install``, never committed to the repository.

A tarball is checked against the lock's ``integrity`` (npm's SHA-512) before a byte of it is
read as an archive; only the regular files the lock names are taken out of it, under names
the lock chooses (no member name ever becomes a path), so a hostile registry or mirror can
neither plant files nor run code. The installed directory holds a manifest naming the lock
it was installed from: the page serves files only from a directory installed from the lock
this code ships with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx

LOCK_NAME = "graphiql_assets.lock.json"
MANIFEST_NAME = "installed.json"
ASSETS_DIR_ENV = "TOKENGATE_GRAPHIQL_ASSETS_DIR"
# A mirror of the npm registry: ours first, then npm's own setting.
REGISTRY_ENVS = ("TOKENGATE_NPM_REGISTRY", "npm_config_registry")
# Filled when a wheel or image is built (`tokengate graphiql install --bundled`).
BUNDLED_DIR_NAME = "graphiql_dist"
# The largest tarball and file accepted (GraphiQL's is 3.6 MB): a registry answering with
# gigabytes, or a decompression bomb, stops here.
MAX_TARBALL_BYTES = 32 * 1024 * 1024
MAX_FILE_BYTES = 16 * 1024 * 1024
DOWNLOAD_TIMEOUT_S = 60.0
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class AssetsError(Exception):
    """Installing failed; the message says why (shown to the user as is)."""


@dataclass(frozen=True, slots=True)
class Package:
    name: str
    version: str
    tarball: str
    integrity: str
    # path inside the tarball -> installed file name
    files: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Lock:
    registry: str
    packages: tuple[Package, ...]
    # SHA-256 of the lock file: what an installed directory must have been installed from.
    digest: str

    @property
    def served(self) -> tuple[str, ...]:
        """The installed files the page loads (scripts and styles; licences stay on disk)."""
        return tuple(
            name
            for package in self.packages
            for name in package.files.values()
            if name.endswith((".js", ".css"))
        )


def parse_lock(raw: bytes) -> Lock:
    data = json.loads(raw)
    packages = []
    seen = {MANIFEST_NAME}
    for entry in data["packages"]:
        files = dict(entry["files"])
        for name in files.values():
            if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
                raise AssetsError(f"the lock names an unsafe file name: {name!r}")
            if name in seen:
                raise AssetsError(f"the lock names {name!r} twice (or the manifest's name)")
            seen.add(name)
        packages.append(
            Package(
                name=str(entry["name"]),
                version=str(entry["version"]),
                tarball=str(entry["tarball"]),
                integrity=str(entry["integrity"]),
                files=files,
            )
        )
    return Lock(
        registry=str(data["registry"]).rstrip("/"),
        packages=tuple(packages),
        digest=hashlib.sha256(raw).hexdigest(),
    )


def load_lock() -> Lock:
    """The lock shipped with this package."""
    return parse_lock(resources.files("tokengate.gateway").joinpath(LOCK_NAME).read_bytes())


def user_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/tokengate/graphiql`` (default ``~/.local/share/tokengate/graphiql``):
    where ``tokengate graphiql install`` puts the files unless told otherwise."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tokengate" / "graphiql"


def bundled_dir() -> Path:
    """Beside this module: filled when a wheel or an image is built."""
    return Path(__file__).resolve().parent / BUNDLED_DIR_NAME


def candidate_dirs(configured: Path | None, environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where the gateway looks for the files, in order: ``$TOKENGATE_GRAPHIQL_ASSETS_DIR``,
    else ``[server] graphiql_assets_dir``, else the files bundled in the package, then the
    user's data directory."""
    env = os.environ if environ is None else environ
    if env.get(ASSETS_DIR_ENV):
        return [Path(env[ASSETS_DIR_ENV])]
    if configured is not None:
        return [configured]
    return [bundled_dir(), user_data_dir(env)]


def install_dir(configured: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """Where ``tokengate graphiql install`` writes without ``--dir``."""
    env = os.environ if environ is None else environ
    if env.get(ASSETS_DIR_ENV):
        return Path(env[ASSETS_DIR_ENV])
    return configured if configured is not None else user_data_dir(env)


def is_installed(directory: Path, lock: Lock) -> bool:
    """``directory`` holds every served file, installed from ``lock``."""
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("lock") != lock.digest:
        return False
    return all((directory / name).is_file() for name in lock.served)


def registry_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The mirror to fetch from, if one is set (``TOKENGATE_NPM_REGISTRY``, then npm's own
    ``npm_config_registry``)."""
    env = os.environ if environ is None else environ
    for name in REGISTRY_ENVS:
        value = env.get(name, "").strip()
        if value:
            if not value.startswith(("https://", "http://")):
                raise AssetsError(f"{name} must be an http(s) URL")
            return value.rstrip("/")
    return None


def tarball_url(package: Package, lock: Lock, mirror: str | None) -> str:
    if mirror is None or not package.tarball.startswith(lock.registry + "/"):
        return package.tarball
    return mirror + package.tarball[len(lock.registry) :]


def check_integrity(data: bytes, integrity: str, what: str) -> None:
    """``integrity`` is a Subresource Integrity string (npm's ``dist.integrity``): one or
    more ``sha512-<base64>``; any of them matching is enough, other algorithms are not
    trusted."""
    wanted = [
        base64.b64decode(item[len("sha512-") :], validate=True)
        for item in integrity.split()
        if item.startswith("sha512-")
    ]
    if not wanted:
        raise AssetsError(f"{what}: the lock has no sha512 integrity")
    actual = hashlib.sha512(data).digest()
    if not any(hmac.compare_digest(actual, w) for w in wanted):
        raise AssetsError(
            f"{what}: integrity check failed (the download is not the pinned package): "
            "nothing was installed"
        )


def download(client: httpx.Client, url: str, what: str) -> bytes:
    try:
        with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise AssetsError(f"{what}: {url} answered HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_TARBALL_BYTES:
                    raise AssetsError(f"{what}: larger than {MAX_TARBALL_BYTES} bytes: refused")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise AssetsError(f"{what}: cannot download {url}: {type(exc).__name__}") from None
    return b"".join(chunks)


def extract(data: bytes, package: Package) -> dict[str, bytes]:
    """The files the lock names, read from a verified tarball: regular files only, no
    member ever written by its own name."""
    wanted = dict(package.files)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                name = wanted.get(member.name)
                if name is None:
                    continue
                if not member.isreg():
                    raise AssetsError(f"{package.name}: {member.name} is not a regular file")
                if member.size > MAX_FILE_BYTES:
                    raise AssetsError(f"{package.name}: {member.name} is too large")
                handle = archive.extractfile(member)
                if handle is None:
                    raise AssetsError(f"{package.name}: cannot read {member.name}")
                found[name] = handle.read(MAX_FILE_BYTES + 1)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise AssetsError(f"{package.name}: not a readable tarball ({exc})") from None
    missing = sorted(path for path, name in wanted.items() if name not in found)
    if missing:
        raise AssetsError(f"{package.name}: the tarball lacks {', '.join(missing)}")
    return found


def install(
    directory: Path,
    lock: Lock | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    force: bool = False,
    client: httpx.Client | None = None,
    say: Callable[[str], None] = lambda _line: None,
) -> bool:
    """Fetches, verifies and installs every package of ``lock`` into ``directory``. Nothing
    in ``directory`` changes unless every package downloaded and verified. Returns False
    when it was already installed from this lock (and ``force`` is not set)."""
    lock = lock or load_lock()
    if not force and is_installed(directory, lock):
        return False
    mirror = registry_url(environ)
    own_client = client is None
    http = client or httpx.Client(timeout=DOWNLOAD_TIMEOUT_S, follow_redirects=True)
    files: dict[str, bytes] = {}
    try:
        for package in lock.packages:
            what = f"{package.name}@{package.version}"
            url = tarball_url(package, lock, mirror)
            say(f"fetching {what} from {url}")
            data = download(http, url, what)
            check_integrity(data, package.integrity, what)
            files.update(extract(data, package))
    finally:
        if own_client:
            http.close()
    _write(directory, files, lock)
    return True


def _write(directory: Path, files: Mapping[str, bytes], lock: Lock) -> None:
    """Writes into a fresh sibling directory, then moves each file into place; the
    manifest last, so a directory is never taken as installed half-way."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST_NAME).unlink(missing_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".graphiql-", dir=directory))
    try:
        for name, content in files.items():
            (staging / name).write_bytes(content)
            os.replace(staging / name, directory / name)
        manifest = {
            "lock": lock.digest,
            "packages": {p.name: p.version for p in lock.packages},
            "sha256": {name: hashlib.sha256(c).hexdigest() for name, c in sorted(files.items())},
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(staging / MANIFEST_NAME, directory / MANIFEST_NAME)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
