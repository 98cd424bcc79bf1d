#!/usr/bin/env bash
# The one test command: installs what the tests need (a venv with the dev extras, Debian's
# PostgreSQL and redis-server when root), starts a private PostgreSQL and Redis on loopback,
# then runs the container checks (tests/container/podman.sh), ruff, mypy and pytest. Extra
# arguments go to pytest. Exit code: non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

PYTHON=${PYTHON:-python3}
VENV=${TOKENGATE_VENV:-$root/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]"
# GraphiQL's pinned files (npm registry, integrity-checked) for the GraphiQL browser test.
"$VENV/bin/tokengate" graphiql install --dir "$root/test-artifacts/graphiql-assets" && export TOKENGATE_GRAPHIQL_TEST_ASSETS="$root/test-artifacts/graphiql-assets"

# --- PostgreSQL: a throwaway cluster on 127.0.0.1, owned by this run --------------------
pg_bin=""
find_pg() {
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && pg_bin=$d
  done
  return 0
}
find_pg
if [ -z "$pg_bin" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "tests/run.sh: installing PostgreSQL (Debian package)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  find_pg
fi
pg_dir=""
cleanup() {
  if [ -n "${container_pid:-}" ]; then
    kill -- "-$container_pid" 2>/dev/null || kill "$container_pid" 2>/dev/null || true
    wait "$container_pid" 2>/dev/null || true
  fi
  [ -n "${container_log:-}" ] && rm -f "$container_log"
  if [ -n "${redis_dir:-}" ] && [ -s "$redis_dir/pid" ]; then
    kill "$(cat "$redis_dir/pid")" 2>/dev/null || true
    rm -rf "$redis_dir"
  fi
  if [ -n "$pg_dir" ] && [ -d "$pg_dir" ]; then
    run_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
}
trap cleanup EXIT
run_pg() {
  if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root: use the postgres user the package created.
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
if [ -n "$pg_bin" ] && [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --no-create-home postgres
fi
if [ -n "$pg_bin" ] && [ -z "${TOKENGATE_TEST_PG_URL:-}" ]; then
  pg_dir=$(mktemp -d /tmp/tokengate-pg.XXXXXX)
  chmod 755 "$pg_dir"
  [ "$(id -u)" = 0 ] && chown postgres "$pg_dir"
  pg_port=$("$VENV/bin/python" -c 'from tokengate.upstreams.loopback import free_port; print(free_port())')
  run_pg "$pg_bin/initdb" -D "$pg_dir/data" -U tokengate --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  run_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -k $pg_dir -c fsync=on" start >/dev/null
  export TOKENGATE_TEST_PG_URL="postgresql://tokengate@127.0.0.1:$pg_port/postgres"
  export TOKENGATE_REQUIRE_PG=1
  echo "tests/run.sh: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port"
elif [ -z "${TOKENGATE_TEST_PG_URL:-}" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "tests/run.sh: PostgreSQL is required in CI and could not be installed" >&2
    exit 1
  fi
  echo "tests/run.sh: no PostgreSQL here; the PostgreSQL store tests will be skipped"
fi

# --- Redis: a throwaway server on 127.0.0.1 for the shared rate limits and revocations ----
if ! command -v redis-server >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "tests/run.sh: installing redis-server (Debian package)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
redis_dir=""
if command -v redis-server >/dev/null && [ -z "${TOKENGATE_TEST_REDIS_URL:-}" ]; then
  redis_dir=$(mktemp -d /tmp/tokengate-redis.XXXXXX)
  redis_port=$("$VENV/bin/python" -c 'from tokengate.upstreams.loopback import free_port; print(free_port())')
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --dir "$redis_dir" --pidfile "$redis_dir/pid" --logfile "$redis_dir/log" --daemonize yes
  for _ in $(seq 50); do [ -s "$redis_dir/pid" ] && break; sleep 0.1; done
  export TOKENGATE_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/0"
  export TOKENGATE_REQUIRE_REDIS=1
  echo "tests/run.sh: $(redis-server --version | awk '{print $1, $3}') on 127.0.0.1:$redis_port"
elif [ -z "${TOKENGATE_TEST_REDIS_URL:-}" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "tests/run.sh: redis-server is required in CI and could not be installed" >&2
    exit 1
  fi
  echo "tests/run.sh: no redis-server here; the shared-limit and revocation tests on Redis will be skipped"
fi

# --- Node.js packages and Chromium: the client, federation and browser tests ---------------
# Every package-lock.json under tests/ and examples/ is installed with `npm ci` (again only
# when its lock changed). Debian's chromium drives the browser tests headless.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  want=()
  command -v node >/dev/null || want+=(nodejs)
  command -v npm >/dev/null || want+=(npm)
  command -v chromium >/dev/null || want+=(chromium)
  if [ ${#want[@]} -gt 0 ]; then
    echo "tests/run.sh: installing ${want[*]} (Debian packages)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
  fi
fi
if command -v npm >/dev/null && command -v node >/dev/null; then
  while IFS= read -r lock; do
    dir=$(dirname "$lock")
    sum=$(sha256sum "$lock" | cut -d' ' -f1)
    if [ "$(cat "$dir/node_modules/.tokengate-lock" 2>/dev/null)" != "$sum" ]; then
      echo "tests/run.sh: npm ci in $dir"
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
      echo "$sum" >"$dir/node_modules/.tokengate-lock"
    fi
  done < <(find tests examples -name package-lock.json -not -path '*/node_modules/*' 2>/dev/null | sort)
  export TOKENGATE_REQUIRE_NODE=1
elif [ "${CI:-}" = "true" ]; then
  echo "tests/run.sh: Node.js and npm are required in CI and could not be installed" >&2
  exit 1
fi
if command -v chromium >/dev/null; then
  export TOKENGATE_CHROMIUM=${TOKENGATE_CHROMIUM:-$(command -v chromium)}
  export TOKENGATE_REQUIRE_CHROMIUM=1
elif [ "${CI:-}" = "true" ]; then
  echo "tests/run.sh: chromium is required in CI and could not be installed" >&2
  exit 1
fi

# --- The container image: tests/container/podman.sh builds and runs it (podman), beside ruff
# and mypy; its output is shown, and it is over, before pytest (whose slow tests time real
# deadlines) starts. Not in the quick loop (-m "not slow") unless CI=true.
container_pid=""
case " $* " in
  *"not slow"*) [ "${CI:-}" = true ] || container_pid=skip ;;
esac
if [ "$container_pid" = skip ]; then
  container_pid=""
  echo "tests/run.sh: container checks not in the quick loop (bash tests/container/podman.sh)"
else
  container_log=$(mktemp /tmp/tokengate-container.XXXXXX)
  group=()
  command -v setsid >/dev/null && group=(setsid) # its own process group, stopped as one
  "${group[@]}" bash tests/container/podman.sh >"$container_log" 2>&1 &
  container_pid=$!
  echo "tests/run.sh: container checks started (tests/container/podman.sh)"
fi

echo "tests/run.sh: ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "tests/run.sh: mypy (strict)"
"$VENV/bin/mypy"
container_failed=""
if [ -n "$container_pid" ]; then
  waited=$SECONDS
  wait "$container_pid" || container_failed=1
  container_pid=""
  cat "$container_log"
  echo "tests/run.sh: container checks over, $((SECONDS - waited)) s after mypy"
  [ -z "$container_failed" ] || echo "tests/run.sh: the container checks FAILED (pytest runs anyway)" >&2
fi
echo "tests/run.sh: pytest"
# The quick loop (-m "not slow") runs on two workers (pytest-xdist): its tests are short and
# independent. The whole suite runs in one process: its slow tests time real deadlines.
workers=()
case " $* " in
  *"not slow"*) case " $* " in *" -n "*|*" -p no:xdist "*) ;; *) workers=(-n 2) ;; esac ;;
esac
"$VENV/bin/python" -m pytest "${workers[@]}" "$@"
[ -z "$container_failed" ] || exit 1
