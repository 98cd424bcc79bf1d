#!/usr/bin/env bash
# The image build after a change to the sources alone, paired: this tree's docker/Dockerfile
# against REF's, each round with a new one-line change to gateway/__init__.py in both build
# contexts, the two builds alternating (which goes first alternates too), on podman's
# layer cache as tests/container/podman.sh leaves it. Prints each build's seconds.
#
#   bash benchmarks/container_build.sh [--rounds N] [--ab REF]    (default: 3 rounds, main)
#
# Needs the base image tests/container/podman.sh makes (run it once first) and podman as
# that script sets it up (runc, no default ulimits, host network).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
ref=main
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2 && shift 2 ;;
    --ab) ref=$2 && shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--ab REF]" >&2 && exit 2 ;;
  esac
done
BASE_IMAGE=localhost/tokengate-ci/python3:bookworm
work=$(mktemp -d /tmp/tokengate-build-bench.XXXXXX)
trap 'rm -rf "$work"; command podman rmi -f localhost/tokengate-bench:tree localhost/tokengate-bench:ref >/dev/null 2>&1 || true' EXIT
printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' >"$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
podman() { command podman --runtime runc "$@"; }
podman image exists "$BASE_IMAGE" || { echo "no $BASE_IMAGE: run tests/container/podman.sh first" >&2 && exit 1; }

paths=(pyproject.toml setup.py README.md gateway schema upstreams docker/Dockerfile)
mkdir -p "$work/tree" "$work/ref"
git ls-files -z -- "${paths[@]}" | xargs -0 cp --parents -t "$work/tree"
git archive "$ref" -- "${paths[@]}" | tar -x -C "$work/ref"
mounts=()
[ -f /etc/ssl/certs/ca-certificates.crt ] &&
  mounts+=(-v /etc/ssl/certs:/etc/ssl/certs:ro --build-arg SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
[ -f /etc/pip.conf ] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)

build() { # side round: prints the seconds
  local t0
  printf '# bench %s %s\n' "$$" "$2" >>"$work/$1/gateway/__init__.py"
  t0=$(date +%s.%N)
  podman build -q --format docker --network host "${mounts[@]}" --build-arg "BASE=$BASE_IMAGE" \
    -f "$work/$1/docker/Dockerfile" -t "localhost/tokengate-bench:$1" "$work/$1" >"$work/build.log" 2>&1 ||
    { tail -20 "$work/build.log" >&2 && exit 1; }
  python3 -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.1f}")' "$t0"
}
echo "warm-up (fills each Dockerfile's cacheable layers): tree $(build tree 0) s, $ref $(build ref 0) s"
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then
    a=$(build tree "$round") && b=$(build ref "$round")
  else
    b=$(build ref "$round") && a=$(build tree "$round")
  fi
  echo "round $round: tree $a s, $ref $b s (load $(cut -d' ' -f1 /proc/loadavg))"
done
