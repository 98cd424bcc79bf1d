#!/usr/bin/env bash
# The real image, built with podman from docker/Dockerfile and run: /healthz and /readyz,
# a query with the bootstrap token, `tokengate token create` through `podman exec`, the
# store on /data surviving a new container, a stop within the drain time, the non-root
# user, a read-only root filesystem, no compiler; prints build time, cold start to /readyz
# 200 and what the image adds over its base (at most 160 MB). Then against PostgreSQL: a
# private cluster on 127.0.0.1 with password authentication, two containers on the host
# network sharing it (a token created through either is accepted by the other; a revocation
# through one is refused by the other within 1 s, over LISTEN/NOTIFY), the secrets (database
# password, server key, bootstrap token) passed as environment variables from this script's
# environment, never on a command line, in the image or in the containers' logs.
#
# The base is Debian bookworm made with debootstrap (no registry is needed) plus Debian's
# python3 and python3-venv; both base images stay in podman's store as the cache. As root
# with apt-get it installs podman, runc and debootstrap. Where podman cannot run it says
# why and exits 0 (skipped), except with CI=true, where that is a failure.
#
#   bash tests/container/podman.sh
#
# Environment: TOKENGATE_CONTAINER_MIRROR (Debian mirror for debootstrap, default: the
# host's apt source or deb.debian.org), TOKENGATE_CONTAINER_REBASE=1 (make the base again),
# TOKENGATE_CONTAINER_NO_CACHE=1 (build the project's image without podman's layer cache).
set -euo pipefail
cd "$(dirname "$0")/../.."

MAX_ADDED_MB=160
DEBIAN_IMAGE=localhost/tokengate-ci/debian:bookworm
BASE_IMAGE=localhost/tokengate-ci/python3:bookworm
IMAGE=localhost/tokengate:ci
run_id="tg-ci-$$"
started=$(date +%s.%N)

run_pg() { # PostgreSQL refuses to run as root: as root, its tools run as the postgres user
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
say() { printf '%s\n' "podman.sh: $*"; }
fail() {
  say "FAIL: $*"
  exit 1
}
skip() {
  if [ "${CI:-}" = true ]; then
    fail "$* (CI=true: the container checks are never skipped)"
  fi
  say "SKIPPED: $*"
  exit 0
}
since() { python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$1"; }
now() { date +%s.%N; }

# --- podman, runc, debootstrap ---------------------------------------------------------
[ "$(uname -s)" = Linux ] || skip "podman runs containers on Linux only"
missing=""
for tool in podman runc debootstrap curl python3; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing podman runc debootstrap (Debian packages)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap curl >/dev/null
  else
    skip "missing:$missing (install podman, runc and debootstrap, or run as root with apt-get)"
  fi
fi
# Docker Compose's own loader checks docker/compose.yaml in tests/docker/test_compose.py.
if ! command -v docker-compose >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing docker-compose (Debian package) for tests/docker/test_compose.py"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null ||
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
fi

# This kind of machine: crun refuses its hybrid cgroups (runc works), default ulimits may
# not be raised, and builds and tests need the host's network (registries, loopback).
conf_dir=$(mktemp -d /tmp/tokengate-podman.XXXXXX)
volume=""
pg_dir=""
cleanup() {
  podman rm -f -i -v "$run_id-1" "$run_id-2" "$run_id-pg-a" "$run_id-pg-b" >/dev/null 2>&1 || true
  [ -n "$volume" ] && podman volume rm -f "$volume" >/dev/null 2>&1
  if [ -n "$pg_dir" ] && [ -d "$pg_dir/data" ]; then
    run_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  [ -n "$pg_dir" ] && rm -rf "$pg_dir"
  rm -rf "$conf_dir"
}
trap cleanup EXIT
cat >"$conf_dir/containers.conf" <<'EOF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$conf_dir/containers.conf"
podman() { command podman --runtime runc "$@"; }
podman info >/dev/null 2>"$conf_dir/info.err" || skip "podman cannot run here: $(tail -1 "$conf_dir/info.err")"

# The host's CA bundle and pip's settings: downloads pass a TLS-intercepting proxy on some
# machines; mounted into the build only, never copied into the image.
build_mounts=()
build_args=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  build_mounts+=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
  build_args+=(--build-arg SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
fi
[ -f /etc/pip.conf ] && build_mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)

# --- the base: Debian bookworm (debootstrap) + python3 + python3-venv, cached ------------
if [ "${TOKENGATE_CONTAINER_REBASE:-}" = 1 ]; then
  podman rmi -f "$BASE_IMAGE" "$DEBIAN_IMAGE" >/dev/null 2>&1 || true
fi
t=$(now)
if ! podman image exists "$DEBIAN_IMAGE"; then
  [ "$(id -u)" = 0 ] || skip "the base image is made with debootstrap, which needs root"
  mirror=${TOKENGATE_CONTAINER_MIRROR:-}
  if [ -z "$mirror" ]; then
    mirror=$(grep -hs -m1 -E '^URIs: http[^ ]*/debian$' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true)
    mirror=${mirror:-http://deb.debian.org/debian}
  fi
  say "making $DEBIAN_IMAGE with debootstrap from $mirror (a few minutes, once)"
  rootfs="$conf_dir/rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$conf_dir/debootstrap.log" 2>&1 ||
    fail "debootstrap failed: $(tail -3 "$conf_dir/debootstrap.log")"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import -q - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi
if ! podman image exists "$BASE_IMAGE"; then
  say "making $BASE_IMAGE (Debian's python3 and python3-venv only)"
  cat >"$conf_dir/Containerfile.base" <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null && rm -rf /var/lib/apt/lists/*
EOF
  podman build -q --format docker --network host -f "$conf_dir/Containerfile.base" -t "$BASE_IMAGE" \
    "$conf_dir" >"$conf_dir/base.log" 2>&1 || fail "the base image failed: $(tail -20 "$conf_dir/base.log")"
fi
say "base ready in $(since "$t") s"
podman run --rm --network host "$BASE_IMAGE" python3 -c 'import venv' 2>"$conf_dir/run.err" ||
  skip "podman cannot run a container here: $(tail -1 "$conf_dir/run.err")"

# --- the project's image ------------------------------------------------------------------
[ "${TOKENGATE_CONTAINER_NO_CACHE:-}" = 1 ] && build_args+=(--no-cache)
previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
t=$(now)
podman build -q --format docker --network host "${build_mounts[@]}" "${build_args[@]}" \
  --build-arg "BASE=$BASE_IMAGE" -f docker/Dockerfile -t "$IMAGE" . >"$conf_dir/build.log" 2>&1 ||
  fail "podman build failed: $(tail -20 "$conf_dir/build.log")"
say "image built in $(since "$t") s"
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true # the image this one replaces
fi
base_size=$(podman image inspect --format '{{.Size}}' "$BASE_IMAGE")
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
added_mb=$(((size - base_size) / 1000000))
say "the image adds $added_mb MB to its base ($((base_size / 1000000)) MB)"
[ "$added_mb" -lt "$MAX_ADDED_MB" ] || fail "the image adds $added_mb MB (at most $MAX_ADDED_MB)"
podman image inspect "$IMAGE" | python3 -c '
import json, sys
image = json.load(sys.stdin)[0]
check = image.get("Healthcheck") or image.get("Config", {}).get("Healthcheck") or {}
sys.exit(0 if "/healthz" in " ".join(check.get("Test", [])) else 1)' ||
  fail "the image has no HEALTHCHECK on /healthz (built without --format docker?)"
say "ok: HEALTHCHECK kept"

# --- run it -------------------------------------------------------------------------------
port=$(free_port)
base="http://127.0.0.1:$port"
bootstrap="ci-bootstrap-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
# Secrets reach the containers as `-e NAME` (the value from this environment): never on a
# command line.
export TOKENGATE_BOOTSTRAP_TOKEN=$bootstrap
volume=$(podman volume create "$run_id-data")
start() { # name: a container on the host network, read-only root, the store on the volume
  podman run -d --name "$1" --network host --read-only -v "$volume:/data" \
    -e TOKENGATE_HOST=127.0.0.1 -e "TOKENGATE_PORT=$port" \
    -e TOKENGATE_BOOTSTRAP_TOKEN "$IMAGE" >/dev/null 2>"$conf_dir/run-$1.err" ||
    fail "podman run failed: $(cat "$conf_dir/run-$1.err")"
  # (podman 4.3 without systemd logs that it cannot schedule the HEALTHCHECK's timer: it
  # still runs on `podman healthcheck run`, as below.)
}
ready_s=""
wait_ready() { # name: sets ready_s, the seconds until /readyz answers 200
  local t0 deadline
  t0=$(now)
  deadline=$(($(date +%s) + 60))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; do
    [ "$(podman inspect --format '{{.State.Running}}' "$1")" = true ] ||
      fail "$1 exited: $(podman logs --tail 20 "$1" 2>&1)"
    [ "$(date +%s)" -lt $deadline ] || fail "$1: /readyz not 200 within 60 s"
    sleep 0.1
  done
  ready_s=$(since "$t0")
}
graphql() { # token query: the response body
  curl -s -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
    --data "$(python3 -c 'import json, sys; print(json.dumps({"query": sys.argv[1]}))' "$2")" "$base/graphql"
}
status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
has_scope() { # token scope: the caller's viewer lists the scope
  local body
  body=$(graphql "$1" '{ viewer { scopes } }')
  case "$body" in
    *"\"$2\""*) return 0 ;;
    *) say "the answer was: $body" && return 1 ;;
  esac
}

start "$run_id-1"
wait_ready "$run_id-1"
say "cold start to /readyz 200: $ready_s s"
[ "$(status_of "$base/healthz")" = 200 ] || fail "/healthz is not 200"
say "ok: /healthz and /readyz answer 200"
podman healthcheck run "$run_id-1" >/dev/null 2>&1 || fail "the HEALTHCHECK fails in the container"
say "ok: the HEALTHCHECK passes (on port $port, from TOKENGATE_PORT)"

[ "$(podman exec "$run_id-1" sh -c 'grep ^Uid: /proc/1/status' | awk '{print $2}')" = 10001 ] ||
  fail "the gateway (PID 1) does not run as uid 10001"
[ "$(podman exec "$run_id-1" id -un)" = tokengate ] || fail "podman exec does not run as tokengate"
say "ok: runs as the non-root user tokengate (10001)"
if podman exec "$run_id-1" sh -c 'command -v gcc || command -v cc || [ -e /opt/tokengate/bin/pip ]' >/dev/null; then
  fail "a compiler, or pip in the gateway's environment, is in the final image"
fi
say "ok: no compiler in the image, no pip in the gateway's environment"

[ "$(status_of -XPOST -H 'Content-Type: application/json' --data '{"query":"{ viewer { scopes } }"}' "$base/graphql")" = 401 ] ||
  fail "a query without a token is not refused with 401"
has_scope "$bootstrap" tokens:admin || fail "the bootstrap token's query failed"
say "ok: a query with the bootstrap token works (and none without a token)"

created=$(podman exec "$run_id-1" tokengate token create --name ci --scope tokens:read --json) ||
  fail "tokengate token create failed in the container"
secret=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["secret"])' "$created")
has_scope "$secret" tokens:read || fail "the token made by podman exec is not accepted"
say "ok: tokengate token create through podman exec makes a working token"

# podman stop: SIGTERM; /readyz answers 503 during the drain; the process exits 0 before
# the stop timeout (20 s, as compose's stop_grace_period) would send SIGKILL.
t=$(now)
podman stop -t 20 "$run_id-1" >/dev/null 2>&1 &
stopper=$!
sleep 1
draining=$(status_of "$base/readyz")
wait $stopper
stop_s=$(since "$t")
[ "$draining" = 503 ] || fail "/readyz answered $draining, not 503, while draining"
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$run_id-1")
[ "$exit_code" = 0 ] || fail "exit code $exit_code after podman stop (137: killed, not drained)"
python3 -c 'import sys; d = float(sys.argv[1]); sys.exit(0 if 3 <= d < 20 else 1)' "$stop_s" ||
  fail "stopped in $stop_s s: not within the drain (3 s delay + up to 10 s)"
say "ok: podman stop drained (/readyz 503) and exited 0 in $stop_s s"

# A new container on the same volume: the store and the server key survived.
podman rm "$run_id-1" >/dev/null 2>&1
start "$run_id-2"
wait_ready "$run_id-2"
say "start on the existing store to /readyz 200: $ready_s s"
has_scope "$secret" tokens:read || fail "the token did not survive a new container on the /data volume"
say "ok: the store on /data survived a new container"
podman stop -t 20 "$run_id-2" >/dev/null 2>&1
podman rm "$run_id-2" >/dev/null 2>&1

# --- against PostgreSQL: two containers on the host network share one store ----------------
# A private cluster on 127.0.0.1 (as tests/pg_cluster.py makes one) that asks for a password
# (SCRAM): the containers get in only with the one passed to them.
t=$(now)
pg_bin=""
find_pg() {
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && pg_bin=$d; done
  if [ -z "$pg_bin" ] && command -v initdb >/dev/null; then pg_bin=$(dirname "$(command -v initdb)"); fi
  return 0
}
find_pg
if [ -z "$pg_bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing PostgreSQL (Debian package)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  find_pg
fi
if [ -z "$pg_bin" ]; then
  [ "${CI:-}" = true ] && fail "no PostgreSQL binaries (initdb) for the PostgreSQL checks (CI=true)"
  say "SKIPPED the PostgreSQL checks: no PostgreSQL binaries (initdb) here"
  say "all other checks passed in $(since "$started") s"
  exit 0
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --no-create-home postgres
fi
pg_dir=$(mktemp -d /tmp/tokengate-container-pg.XXXXXX)
chmod 755 "$pg_dir"
pg_password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
(umask 077 && printf '%s\n' "$pg_password" >"$pg_dir/pw")
[ "$(id -u)" = 0 ] && chown -R postgres "$pg_dir"
run_pg "$pg_bin/initdb" -D "$pg_dir/data" -U tokengate --auth=scram-sha-256 --pwfile="$pg_dir/pw" \
  -E UTF8 --locale=C.UTF-8 >/dev/null
rm -f "$pg_dir/pw"
pg_port=$(free_port)
run_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -k $pg_dir" start >/dev/null ||
  fail "PostgreSQL did not start: $(tail -5 "$pg_dir/log")"
if [ -x "$pg_bin/psql" ]; then
  PGPASSWORD=not-the-password "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U tokengate -d postgres \
    -Atc 'select 1' >/dev/null 2>&1 && fail "PostgreSQL accepts a wrong password"
fi
say "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port (password authentication)"

export TOKENGATE_STORE_URL="postgresql://tokengate:$pg_password@127.0.0.1:$pg_port/postgres"
TOKENGATE_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
export TOKENGATE_SECRET_KEY
port_a=$(free_port)
port_b=$(free_port)
start_pg() { # name port: a replica on the shared store, its secrets from this environment
  podman run -d --name "$1" --network host --read-only \
    -e TOKENGATE_HOST=127.0.0.1 -e "TOKENGATE_PORT=$2" -e TOKENGATE_STORE_URL \
    -e TOKENGATE_SECRET_KEY -e TOKENGATE_BOOTSTRAP_TOKEN "$IMAGE" >/dev/null 2>"$conf_dir/run-$1.err" ||
    fail "podman run failed: $(cat "$conf_dir/run-$1.err")"
}
start_pg "$run_id-pg-a" "$port_a"
base="http://127.0.0.1:$port_a"
wait_ready "$run_id-pg-a"
say "cold start on PostgreSQL (empty: migrations, bootstrap token) to /readyz 200: $ready_s s"
start_pg "$run_id-pg-b" "$port_b"
base="http://127.0.0.1:$port_b"
wait_ready "$run_id-pg-b"
say "second replica to /readyz 200: $ready_s s"
readyz_b=$(curl -s "$base/readyz")
case "$readyz_b" in
  *'"revocations":"listening"'*) ;;
  *) fail "replica B's /readyz does not report the revocation bus listening: $readyz_b" ;;
esac
say "ok: both replicas ready on PostgreSQL; B's revocation bus is listening"

# A token created through A (GraphQL) is accepted by B; one made by `podman exec` in B by A.
base="http://127.0.0.1:$port_a"
created=$(graphql "$bootstrap" 'mutation { createToken(input: {source: "internal", name: "ci-pg", scopes: ["tokens:read"]}) { token { id } secret } }')
read -r token_id secret_a < <(python3 -c '
import json, sys
payload = json.loads(sys.argv[1])["data"]["createToken"]
print(payload["token"]["id"], payload["secret"])' "$created") || fail "createToken through A failed: $created"
exec_made=$(podman exec "$run_id-pg-b" tokengate token create --name ci-pg-exec --scope tokens:read --json) ||
  fail "tokengate token create failed in replica B"
secret_b=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["secret"])' "$exec_made")
has_scope "$secret_b" tokens:read || fail "replica A refuses the token made in replica B"

# B accepts the token created through A (and caches it); revoked through A at once, B
# refuses it within 1 s (the bus; without it, B's cache would accept it for up to 2 s). One
# process does the three steps, so that no process start-up falls between them.
revoked_after=$(SECRET_A=$secret_a python3 - "$port_a" "$port_b" "$token_id" <<'EOF_PY'
import json, os, sys, time, urllib.error, urllib.request

port_a, port_b, token_id = sys.argv[1:]
viewer = "{ viewer { scopes } }"


def post(port, token, query):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, None


status, body = post(port_b, os.environ["SECRET_A"], viewer)
if status != 200 or "tokens:read" not in (body or {}).get("data", {}).get("viewer", {}).get("scopes", []):
    sys.exit(f"podman.sh: FAIL: replica B refuses the token created through replica A: {status} {body}")
revoke = 'mutation { revokeToken(input: {id: "%s"}) { revokedTokenId } }' % token_id
status, body = post(port_a, os.environ["TOKENGATE_BOOTSTRAP_TOKEN"], revoke)
if status != 200 or body.get("errors"):
    sys.exit(f"podman.sh: FAIL: revokeToken through A failed: {status} {body}")
t0 = time.monotonic()
while post(port_b, os.environ["SECRET_A"], viewer)[0] != 401:
    if time.monotonic() - t0 > 1.0:
        sys.exit("podman.sh: FAIL: replica B still accepts the token 1 s after its revocation through A")
    time.sleep(0.01)
print(f"{time.monotonic() - t0:.3f}")
EOF_PY
) || exit 1
say "ok: a token created through either replica is accepted by the other"
say "ok: revoked through A, refused by B after $revoked_after s"

# The secrets: passed in, never baked into the image nor written to the logs.
podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" >"$conf_dir/image-env"
if grep -E '^TOKENGATE_(SECRET_KEY|BOOTSTRAP_TOKEN)=|^TOKENGATE_STORE_URL=.*@' "$conf_dir/image-env" >/dev/null; then
  fail "the image's environment holds a secret"
fi
for name in "$run_id-pg-a" "$run_id-pg-b"; do
  podman logs "$name" >"$conf_dir/logs-$name" 2>&1
  [ -s "$conf_dir/logs-$name" ] || fail "$name logged nothing (the log check would prove nothing)"
  if grep -F -e "$pg_password" -e "$TOKENGATE_SECRET_KEY" -e "$bootstrap" -e "$secret_a" -e "$secret_b" \
    "$conf_dir/logs-$name" >/dev/null; then
    fail "$name wrote a secret to its log"
  fi
done
say "ok: no secret in the image's environment or in the replicas' logs"
podman rm -f -v "$run_id-pg-a" "$run_id-pg-b" >/dev/null 2>&1 # (the drain was checked above)
say "PostgreSQL checks took $(since "$t") s"

say "all checks passed in $(since "$started") s"
