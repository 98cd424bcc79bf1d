"""The Docker files, checked without a Docker engine (none runs on these machines).

The Dockerfile is parsed and its install and start steps are replayed in a fresh virtualenv:
`pip install .`, then its CMD with its ENV (with /data mapped to a temporary directory),
then its HEALTHCHECK command against the running process.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
import venv
from pathlib import Path

import pytest
import yaml

from tokengate.upstreams.loopback import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_dockerfile_shape() -> None:
    steps = instructions()
    assert sum(1 for word, _ in steps if word == "FROM") >= 2, "multi-stage build"
    stage = final_stage()
    users = [rest for word, rest in stage if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "runs as a non-root user"
    healthchecks = [rest for word, rest in stage if word == "HEALTHCHECK"]
    assert healthchecks and "/healthz" in healthchecks[-1]
    volumes = [rest for word, rest in stage if word == "VOLUME"]
    assert volumes and "/data" in volumes[-1]
    assert env_of(stage)["TOKENGATE_STORE_URL"].startswith("sqlite:////data/")
    cmd = [rest for word, rest in stage if word == "CMD"][-1]
    assert cmd == '["tokengate", "serve"]'
    # Nothing secret is baked into the image.
    assert not re.search(
        r"(?i)(secret|password|token)_?[a-z]*=\S",
        DOCKERFILE.read_text().split("HEALTHCHECK")[0].replace("TOKENGATE_", ""),
    )


def test_base_is_a_build_argument_and_the_final_stage_has_no_compiler() -> None:
    """`--build-arg BASE=` swaps the base of both stages: the official slim Python image by
    default, or a Debian one with only python3 and python3-venv (no `python`, no compiler)."""
    steps = instructions()
    first_from = next(i for i, (word, _) in enumerate(steps) if word == "FROM")
    args = [rest for word, rest in steps[:first_from] if word == "ARG"]
    assert any(a.startswith("BASE=python:3.") and a.endswith("-slim") for a in args)
    froms = [rest.split()[0] for word, rest in steps if word == "FROM"]
    assert froms == ["${BASE}", "${BASE}"]
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    assert "python3 -m venv" in runs and not re.search(r"(^|[\s;&])python -m", runs)
    final = " ".join(rest for word, rest in final_stage())
    assert not re.search(r"\b(gcc|g\+\+|cc|build-essential|clang|apt-get)\b", final)
    assert "COPY --from=build /opt/tokengate /opt/tokengate" in " ".join(
        f"{word} {rest}" for word, rest in final_stage()
    )


def test_compose_has_gateway_and_postgres() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert services["db"]["image"].startswith("postgres:")
    gateway = services["gateway"]
    assert gateway["build"]["dockerfile"] == "docker/Dockerfile"
    assert gateway["environment"]["TOKENGATE_STORE_URL"].startswith("postgresql://")
    assert gateway["depends_on"]["db"]["condition"] == "service_healthy"
    assert all(p.startswith("127.0.0.1:") for p in gateway["ports"])


def test_stop_grace_period_covers_the_drain_and_the_graceful_shutdown() -> None:
    """`docker compose stop` must not SIGKILL a gateway still draining or finishing."""
    from tokengate.gateway.cli import _server_options
    from tokengate.gateway.config import Config

    config = Config()
    needed = config.server.shutdown_delay_s + _server_options(config)["timeout_graceful_shutdown"]
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    grace = compose["services"]["gateway"]["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace) and int(grace[:-1]) > needed
    assert ("STOPSIGNAL", "SIGTERM") in final_stage()


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build stage's `python -m venv` + `pip install .`, in a fresh environment."""
    target = tmp_path_factory.mktemp("image") / "opt-tokengate"
    venv.create(target, with_pip=True)
    result = subprocess.run(
        [str(target / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return target


def test_image_steps_install_start_and_pass_the_healthcheck(
    fresh_venv: Path, tmp_path: Path
) -> None:
    stage = final_stage()
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    env = {k: v.replace("/data", str(data)) for k, v in env_of(stage).items() if k != "PATH"}
    env.update(
        PATH=f"{fresh_venv / 'bin'}:/usr/bin:/bin",
        TOKENGATE_HOST="127.0.0.1",
        TOKENGATE_PORT=str(port),
        TOKENGATE_SHUTDOWN_DELAY_S="0",  # stops at once (the drain has its own tests)
    )
    cmd = [rest for word, rest in stage if word == "CMD"][-1]
    argv = [str(fresh_venv / "bin" / a) if i == 0 else a for i, a in enumerate(yaml.safe_load(cmd))]
    process = subprocess.Popen(
        argv, cwd=data, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        health = [rest for word, rest in stage if word == "HEALTHCHECK"][-1]
        check = yaml.safe_load(health.split("CMD", 1)[1].strip())
        # As is: it asks the port TOKENGATE_PORT names (a free one here, not 8000).
        check = [str(fresh_venv / "bin" / "python"), *check[1:]]
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run(check, capture_output=True, env=env, timeout=10)
            if probe.returncode == 0:
                break
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the HEALTHCHECK never passed"
            time.sleep(0.3)
        assert (data / "tokengate.db").exists(), "the store lives on the volume"
        assert (data / "tokengate.key").exists(), "so does the generated server key"
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert process.returncode in (0, -15)
