"""`tokengate graphiql install` against a loopback fake npm registry: a pinned tarball is
installed; a tampered one, a hostile archive (symlinks, hard links, traversal names, a
bomb), a registry error or an oversized answer installs nothing and leaves an existing
installation as it was."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokengate.gateway import graphiql_assets
from tokengate.gateway.cli import main
from tokengate.gateway.graphiql_assets import (
    ASSETS_DIR_ENV,
    MANIFEST_NAME,
    AssetsError,
    Lock,
    check_integrity,
    install,
    is_installed,
    load_lock,
    parse_lock,
)
from tokengate.upstreams.loopback import serve_in_thread

NPM = "https://registry.npmjs.org"
MIRROR_ENVS = ("TOKENGATE_NPM_REGISTRY", "npm_config_registry")


def tarball(members: dict[str, bytes], *, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for info in extra or []:
            archive.addfile(info)
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@dataclass
class FakeRegistry:
    """Serves tarballs by path; counts what was asked."""

    url: str = ""
    tarballs: dict[str, bytes] = field(default_factory=dict)
    status: int = 200
    asked: list[str] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        self.asked.append(request.url.path)
        body = self.tarballs.get(request.url.path)
        if self.status != 200 or body is None:
            return Response(b"nope", status_code=self.status if self.status != 200 else 404)
        return Response(body, media_type="application/octet-stream")


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    app = Starlette(routes=[Route("/{path:path}", fake.endpoint)])
    with serve_in_thread(app) as url:
        fake.url = url
        for name in MIRROR_ENVS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("TOKENGATE_NPM_REGISTRY", url)
        yield fake


def make_lock(packages: list[tuple[str, bytes, dict[str, str]]]) -> Lock:
    """A lock pinning each (name, tarball bytes, files) at registry.npmjs.org."""
    raw = {
        "registry": NPM,
        "packages": [
            {
                "name": name,
                "version": "1.0.0",
                "tarball": f"{NPM}/{name}/-/{name}-1.0.0.tgz",
                "integrity": sri(data),
                "files": files,
            }
            for name, data, files in packages
        ],
    }
    return parse_lock(json.dumps(raw).encode())


GOOD_JS = b"window.Fake = 1;\n"
GOOD_CSS = b".fake { color: red }\n"


@pytest.fixture
def good(registry: FakeRegistry) -> Lock:
    data = tarball(
        {
            "package/dist/fake.min.js": GOOD_JS,
            "package/fake.min.css": GOOD_CSS,
            "package/README.md": b"not wanted",
        }
    )
    registry.tarballs["/fake/-/fake-1.0.0.tgz"] = data
    return make_lock(
        [
            (
                "fake",
                data,
                {"package/dist/fake.min.js": "fake.min.js", "package/fake.min.css": "fake.min.css"},
            )
        ]
    )


def test_installs_from_the_mirror_and_only_once(
    registry: FakeRegistry, good: Lock, tmp_path: Path
) -> None:
    target = tmp_path / "assets"
    assert install(target, good) is True
    assert (target / "fake.min.js").read_bytes() == GOOD_JS
    assert (target / "fake.min.css").read_bytes() == GOOD_CSS
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [MANIFEST_NAME, "fake.min.css", "fake.min.js"]
    )
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    assert manifest["lock"] == good.digest
    assert manifest["sha256"]["fake.min.js"] == hashlib.sha256(GOOD_JS).hexdigest()
    assert is_installed(target, good)
    assert registry.asked == ["/fake/-/fake-1.0.0.tgz"]
    # Installed from this lock already: nothing fetched; --force fetches again.
    assert install(target, good) is False and len(registry.asked) == 1
    assert install(target, good, force=True) is True and len(registry.asked) == 2


def test_npm_config_registry_is_honoured(
    registry: FakeRegistry, good: Lock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKENGATE_NPM_REGISTRY")
    monkeypatch.setenv("npm_config_registry", registry.url + "/")
    assert install(tmp_path / "a", good) is True and registry.asked


def test_tampered_tarball_installs_nothing(
    registry: FakeRegistry, good: Lock, tmp_path: Path
) -> None:
    target = tmp_path / "assets"
    assert install(target, good)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    # The registry now answers with other bytes under the pinned name.
    registry.tarballs["/fake/-/fake-1.0.0.tgz"] = tarball(
        {"package/dist/fake.min.js": b"alert('owned')", "package/fake.min.css": b""}
    )
    with pytest.raises(AssetsError, match="integrity check failed"):
        install(target, good, force=True)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    fresh = tmp_path / "fresh"
    with pytest.raises(AssetsError, match="integrity"):
        install(fresh, good)
    assert not fresh.exists() or not any(fresh.iterdir())


def test_one_bad_package_of_several_installs_nothing(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    first = tarball({"package/a.js": b"a"})
    second = tarball({"package/b.js": b"b"})
    registry.tarballs["/first/-/first-1.0.0.tgz"] = first
    registry.tarballs["/second/-/second-1.0.0.tgz"] = tarball({"package/b.js": b"evil"})
    lock = make_lock(
        [
            ("first", first, {"package/a.js": "a.js"}),
            ("second", second, {"package/b.js": "b.js"}),
        ]
    )
    target = tmp_path / "assets"
    with pytest.raises(AssetsError, match=r"second@1\.0\.0: integrity"):
        install(target, lock)
    assert not target.exists()


def _link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    ("extra", "members", "error"),
    [
        # The wanted name is a symlink (to the server's key, say): refused.
        ([_link("package/x.js", tarfile.SYMTYPE, "../../../gateway.key")], {}, "not a regular"),
        ([_link("package/x.js", tarfile.LNKTYPE, "/etc/passwd")], {}, "not a regular"),
        # A directory under the wanted name.
        ([_link("package/x.js", tarfile.DIRTYPE, "")], {}, "not a regular"),
        # Traversal and absolute names are never wanted, so never written; the wanted
        # file is then missing.
        ([], {"package/../../evil.js": b"x", "/var/evil.js": b"x"}, "lacks package/x.js"),
    ],
)
def test_hostile_archive_installs_nothing(
    registry: FakeRegistry,
    tmp_path: Path,
    extra: list[tarfile.TarInfo],
    members: dict[str, bytes],
    error: str,
) -> None:
    data = tarball(members, extra=extra)
    registry.tarballs["/x/-/x-1.0.0.tgz"] = data
    # Pinned with the hostile archive's own hash: integrity alone would let it through.
    lock = make_lock([("x", data, {"package/x.js": "x.js"})])
    workdir = tmp_path / "work"
    target = workdir / "assets"
    with pytest.raises(AssetsError, match=error):
        install(target, lock)
    assert not (target / "x.js").exists() and not (target / MANIFEST_NAME).exists()
    assert not list(tmp_path.rglob("evil.js"))


def test_not_a_tarball_and_a_bomb(
    registry: FakeRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    junk = b"this is not gzip"
    registry.tarballs["/junk/-/junk-1.0.0.tgz"] = junk
    with pytest.raises(AssetsError, match="not a readable tarball"):
        install(tmp_path / "a", make_lock([("junk", junk, {"package/a.js": "a.js"})]))
    monkeypatch.setattr(graphiql_assets, "MAX_FILE_BYTES", 1000)
    bomb = tarball({"package/a.js": b"\0" * 100_000})
    registry.tarballs["/bomb/-/bomb-1.0.0.tgz"] = bomb
    with pytest.raises(AssetsError, match="too large"):
        install(tmp_path / "b", make_lock([("bomb", bomb, {"package/a.js": "a.js"})]))


def test_registry_errors_and_oversized_answers(
    registry: FakeRegistry, good: Lock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.status = 500
    with pytest.raises(AssetsError, match="HTTP 500"):
        install(tmp_path / "a", good)
    registry.status = 200
    monkeypatch.setattr(graphiql_assets, "MAX_TARBALL_BYTES", 64)
    with pytest.raises(AssetsError, match="larger than 64 bytes"):
        install(tmp_path / "b", good)
    monkeypatch.setenv("TOKENGATE_NPM_REGISTRY", "file:///etc")
    with pytest.raises(AssetsError, match="http"):
        install(tmp_path / "c", good)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unreachable_registry(good: Lock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tokengate.upstreams.loopback import free_port

    monkeypatch.setenv("TOKENGATE_NPM_REGISTRY", f"http://127.0.0.1:{free_port()}")
    with httpx.Client(timeout=2) as client, pytest.raises(AssetsError, match="cannot download"):
        install(tmp_path / "a", good, client=client)


def test_integrity_strings() -> None:
    data = b"abc"
    check_integrity(data, sri(data), "x")
    check_integrity(data, f"sha1-AAAA {sri(data)}", "x")  # one sha512 match is enough
    with pytest.raises(AssetsError, match="no sha512"):
        check_integrity(data, "sha1-" + base64.b64encode(hashlib.sha1(data).digest()).decode(), "x")  # noqa: S324
    with pytest.raises(AssetsError, match="integrity check failed"):
        check_integrity(b"abd", sri(data), "x")


def test_the_shipped_lock() -> None:
    lock = load_lock()
    names = {p.name for p in lock.packages}
    assert names == {"graphiql", "react", "react-dom"}
    for package in lock.packages:
        assert package.tarball.startswith(f"{NPM}/{package.name}/-/")
        assert package.integrity.startswith("sha512-")
        assert len(base64.b64decode(package.integrity[7:])) == 64
    assert set(lock.served) == {
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "graphiql.min.css",
    }


def test_a_lock_cannot_name_a_path() -> None:
    for bad in ("../x.js", "a/b.js", ".hidden.js", ""):
        raw = {
            "registry": NPM,
            "packages": [
                {"name": "x", "version": "1", "tarball": "t", "integrity": "i", "files": {"a": bad}}
            ],
        }
        with pytest.raises(AssetsError, match="unsafe file name"):
            parse_lock(json.dumps(raw).encode())
    twice = {
        "registry": NPM,
        "packages": [
            {"name": n, "version": "1", "tarball": "t", "integrity": "i", "files": {"a": name}}
            for n, name in (("x", "a.js"), ("y", "a.js"))
        ],
    }
    with pytest.raises(AssetsError, match="twice"):
        parse_lock(json.dumps(twice).encode())
    twice["packages"] = twice["packages"][:1]
    twice["packages"][0]["files"] = {"a": MANIFEST_NAME}
    with pytest.raises(AssetsError, match="twice"):
        parse_lock(json.dumps(twice).encode())


def test_cli_refuses_a_tampered_download(
    registry: FakeRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real lock, a registry that serves something else under its names."""
    for package in load_lock().packages:
        path = package.tarball[len(NPM) :]
        registry.tarballs[path] = tarball({"package/LICENSE": b"tampered"})
    monkeypatch.delenv(ASSETS_DIR_ENV, raising=False)
    target = tmp_path / "assets"
    assert main(["graphiql", "install", "--dir", str(target)]) == 1
    err = capsys.readouterr().err
    assert "integrity check failed" in err and "not installed" in err
    assert not target.exists() or not any(target.iterdir())
    # Default directory: $TOKENGATE_GRAPHIQL_ASSETS_DIR, else [server] graphiql_assets_dir.
    config = tmp_path / "tokengate.toml"
    config.write_text('[server]\ngraphiql_assets_dir = "ui"\n')
    monkeypatch.setattr(graphiql_assets, "install", _record_install)
    assert main(["graphiql", "install", "--config", str(config)]) == 0
    assert _installed_into == [tmp_path / "ui"]
    monkeypatch.setenv(ASSETS_DIR_ENV, str(tmp_path / "env"))
    assert main(["graphiql", "install", "--config", str(config)]) == 0
    assert _installed_into[-1] == tmp_path / "env"


_installed_into: list[Path] = []


def _record_install(directory: Path, **_kwargs: object) -> bool:
    _installed_into.append(directory)
    return True


def test_where_the_files_are_looked_for(tmp_path: Path) -> None:
    bundled = graphiql_assets.bundled_dir()
    assert bundled.parent == Path(graphiql_assets.__file__).resolve().parent
    # Not a name Python could import in place of the module (graphiql_assets.py).
    assert bundled.name != "graphiql_assets"
    xdg = {"XDG_DATA_HOME": str(tmp_path)}
    user = tmp_path / "tokengate" / "graphiql"
    assert graphiql_assets.candidate_dirs(None, xdg) == [bundled, user]
    assert graphiql_assets.candidate_dirs(tmp_path / "c", xdg) == [tmp_path / "c"]
    env = {**xdg, ASSETS_DIR_ENV: str(tmp_path / "e")}
    assert graphiql_assets.candidate_dirs(tmp_path / "c", env) == [tmp_path / "e"]
    assert graphiql_assets.install_dir(None, xdg) == user
    assert graphiql_assets.install_dir(tmp_path / "c", xdg) == tmp_path / "c"
    assert graphiql_assets.install_dir(tmp_path / "c", env) == tmp_path / "e"
