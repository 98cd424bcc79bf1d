"""docker/compose.yaml through Docker Compose's own loader: `docker-compose config` (Debian's
docker-compose 1.29, which checks the file against the Compose specification's schema and
resolves its variables without a container engine). tests/container/podman.sh installs it
as root with the container tools; without it these tests skip, except with CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
SECRETS = {"POSTGRES_PASSWORD": "pw-for-the-test", "TOKENGATE_SECRET_KEY": "k" * 48}


def compose_config(
    path: Path, env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose is required in CI (tests/container/podman.sh installs it)")
        pytest.skip("no docker-compose here (Debian package docker-compose)")
    # Only what the test passes: no variable of the caller's environment leaks in.
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run(
        [tool, "-f", str(path), "config"],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid_for_docker_compose() -> None:
    result = compose_config(COMPOSE, SECRETS)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    gateway = resolved["services"]["gateway"]
    assert Path(gateway["build"]["context"]) == ROOT, "the build context is the repository root"
    assert (ROOT / gateway["build"]["dockerfile"]).is_file()
    env = gateway["environment"]
    assert env["TOKENGATE_STORE_URL"] == "postgresql://tokengate:pw-for-the-test@db:5432/tokengate"
    assert env["TOKENGATE_SECRET_KEY"] == SECRETS["TOKENGATE_SECRET_KEY"]
    assert env["TOKENGATE_BOOTSTRAP_TOKEN"] == "", "optional: empty when unset"
    assert gateway["depends_on"]["db"]["condition"] == "service_healthy"
    assert gateway["stop_grace_period"] == "20s"
    assert gateway["volumes"] == ["gatewaydata:/data:rw"]


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_a_secret(missing: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    result = compose_config(COMPOSE, env)
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def test_docker_compose_checks_the_schema(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is refused."""
    broken = COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periods:")
    assert broken != COMPOSE.read_text()
    (tmp_path / "compose.yaml").write_text(broken)
    result = compose_config(tmp_path / "compose.yaml", SECRETS, cwd=tmp_path)
    assert result.returncode != 0
    assert "stop_grace_periods" in result.stderr
