"""The Kubernetes manifests in docker/k8s/: valid against the Kubernetes schemas (bundled by
kubernetes-validate, offline), and consistent with the image and the gateway: the probes hit
the gateway's own paths on the port it listens on, the grace period outlasts the drain, the
secrets come from a Secret, the config from the ConfigMap, the user is the image's."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from tests.docker.test_docker import env_of, final_stage
from tokengate.gateway.app import ROUTES
from tokengate.gateway.cli import _server_options
from tokengate.gateway.config import Config, load
from tokengate.upstreams.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"
# The oldest Kubernetes release still in wide use, and the newest the validator knows.
VERSIONS = ("1.29", kubernetes_validate.latest_version())


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def one(kind: str) -> dict[str, Any]:
    found = [d for d in manifests() if d["kind"] == kind]
    assert len(found) == 1, f"one {kind} in docker/k8s/"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def literal_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in container().get("env", []) if "value" in e}


def config_toml() -> tuple[str, str]:
    """(file name, text) of the one TOML file the ConfigMap holds."""
    data = one("ConfigMap")["data"]
    assert len(data) == 1
    ((name, text),) = data.items()
    return name, text


def effective_config(tmp_path: Path) -> Config:
    """The gateway's config in the pod: the image's ENV, the Deployment's literal env and the
    ConfigMap's file at the path TOKENGATE_CONFIG names."""
    env = {**env_of(final_stage()), **literal_env()}
    mount = next(m for m in container()["volumeMounts"] if m["name"] == "config")
    name, text = config_toml()
    assert env["TOKENGATE_CONFIG"] == f"{mount['mountPath']}/{name}"
    path = tmp_path / name
    path.write_text(text)
    env["TOKENGATE_CONFIG"] = str(path)
    return load(environ=env)


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_are_valid_kubernetes_resources(version: str) -> None:
    docs = manifests()
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "ConfigMap"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_a_misspelt_field() -> None:
    """The check above can fail: strict validation refuses an unknown key."""
    doc = one("Deployment")
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


def test_probes_hit_the_gateways_paths_on_its_port(tmp_path: Path) -> None:
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    probes = {kind: c[f"{kind}Probe"]["httpGet"] for kind in ("readiness", "liveness", "startup")}
    # Readiness is the one that goes 503 while draining; liveness must stay 200 then.
    assert probes["readiness"]["path"] == "/readyz"
    assert probes["liveness"]["path"] == "/healthz"
    assert probes["startup"]["path"] == "/healthz"
    assert all(p["path"] in ROUTES for p in probes.values())
    listens_on = effective_config(tmp_path).server.port
    for probe in probes.values():
        assert ports[probe["port"]] == listens_on
    service_port = one("Service")["spec"]["ports"][0]
    assert ports[service_port["targetPort"]] == listens_on


def test_grace_period_outlasts_the_drain_and_readiness_notices_it(tmp_path: Path) -> None:
    config = effective_config(tmp_path)
    delay = config.server.shutdown_delay_s
    in_flight = _server_options(config)["timeout_graceful_shutdown"]
    assert pod_spec()["terminationGracePeriodSeconds"] > delay + in_flight
    readiness = container()["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= delay


def test_secrets_come_from_a_secret_and_the_config_from_the_configmap(tmp_path: Path) -> None:
    env = {e["name"]: e for e in container()["env"]}
    for name in ("TOKENGATE_SECRET_KEY", "TOKENGATE_BOOTSTRAP_TOKEN", "TOKENGATE_STORE_URL"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "tokengate" and ref["key"]
    literal = [name.removeprefix("TOKENGATE_") for name in literal_env()]
    assert literal and not any(w in n for n in literal for w in ("SECRET", "TOKEN", "PASSWORD"))
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    assert volumes["config"]["configMap"]["name"] == one("ConfigMap")["metadata"]["name"]
    # Replicas share a store only on PostgreSQL (the Secret's store-url); the file's store
    # URL would be overridden by the image's TOKENGATE_STORE_URL anyway.
    _, text = config_toml()
    assert "[store]" not in text
    assert effective_config(tmp_path).sources == ()


def test_runs_as_the_images_non_root_user() -> None:
    stage = final_stage()
    useradd = next(rest for word, rest in stage if word == "RUN" and "useradd" in rest)
    uid = int(useradd.split("--uid", 1)[1].split()[0])
    pod = pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == uid != 0
    security = container()["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container()["volumeMounts"]}
    volumes = [rest for word, rest in stage if word == "VOLUME"]
    assert "/data" in mounts and "/data" in volumes[-1]


def test_service_selects_the_deployments_pods() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one("Service")["spec"]["selector"].items() <= labels.items()


@pytest.mark.slow
def test_the_pods_config_serves_the_probes_and_drains_within_the_grace_period(
    tmp_path: Path,
) -> None:
    """The ConfigMap's file and the pod's env, served over loopback: the probes answer 200;
    after SIGTERM readiness fails and liveness does not; the process exits in time."""
    name, text = config_toml()
    (tmp_path / name).write_text(text)
    port = free_port()
    env = {**env_of(final_stage()), **literal_env()}
    env.update(
        PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
        TOKENGATE_CONFIG=str(tmp_path / name),
        TOKENGATE_HOST="127.0.0.1",
        TOKENGATE_PORT=str(port),
        TOKENGATE_STORE_URL=f"sqlite:///{tmp_path / 'tokengate.db'}",
        TOKENGATE_SECRET_KEY="k" * 48,
        TOKENGATE_BOOTSTRAP_TOKEN="bootstrap-" + "b" * 30,
    )
    probes = {
        kind: container()[f"{kind}Probe"]["httpGet"]["path"] for kind in ("readiness", "liveness")
    }
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "tokengate"), "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=base, timeout=2) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get(probes["readiness"]).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "never ready"
                time.sleep(0.2)
            assert client.get(probes["liveness"]).status_code == 200
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert client.get(probes["readiness"]).status_code == 503
            assert client.get(probes["liveness"]).status_code == 200
        process.wait(timeout=pod_spec()["terminationGracePeriodSeconds"])
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    # Served on through the drain delay, then stopped well inside the grace period.
    assert took >= effective_config(tmp_path).server.shutdown_delay_s - 0.5
