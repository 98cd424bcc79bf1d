"""The ``tokengate`` command: serve (--demo), token create, export-schema, export, migrate,
simulate, demo jwt, graphiql install."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokengate.gateway import config as config_module
from tokengate.gateway.config import Config, ConfigError

EXIT_CONFIG = 2
# prometheus_client's multiprocess directory, read when it is first imported: set by
# `serve --workers N` for its workers (gateway/metrics.py), never inherited.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _load(args: argparse.Namespace) -> Config:
    return config_module.load(
        Path(args.config) if args.config else None,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )


def _serve(args: argparse.Namespace) -> int:
    import os

    # Before anything imports prometheus_client: one process keeps its figures in memory;
    # a directory left from another run would add its figures to ours.
    os.environ.pop(MULTIPROC_ENV, None)
    from tokengate.gateway import logs

    logs.setup(args.log_level.upper())
    config = _load(args)
    if args.demo:
        if args.workers != 1:
            print("tokengate: --demo serves from one process: drop --workers", file=sys.stderr)
            return EXIT_CONFIG
        return _serve_demo(config)
    if args.workers > 1:
        return _run_workers(args, config)
    _run(config)
    return 0


def _run_workers(args: argparse.Namespace, config: Config) -> int:
    """N processes on one socket (the supervisor restarts a worker that dies). The store is
    prepared once here; the workers load the same config from the environment."""
    import os
    import shutil
    import tempfile

    import uvicorn

    from tokengate.gateway.app import WORKER_LOG_LEVEL_ENV, prepare_store
    from tokengate.gateway.workers import Supervisor

    asyncio.run(prepare_store(config))
    if args.config:
        os.environ[config_module.CONFIG_ENV] = str(Path(args.config).resolve())
    os.environ["TOKENGATE_HOST"] = config.server.host
    os.environ["TOKENGATE_PORT"] = str(config.server.port)
    os.environ[WORKER_LOG_LEVEL_ENV] = args.log_level.upper()
    metrics_dir = None
    if config.server.metrics:
        # The workers' shared figures: private to this run (mkdtemp makes it 0700), removed
        # after it.
        metrics_dir = tempfile.mkdtemp(prefix="tokengate-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    _announce(config, f" with {args.workers} worker processes")
    # What uvicorn.run does for workers, with the supervisor that lets workers drain.
    server_config = uvicorn.Config(
        "tokengate.gateway.app:worker_app",
        factory=True,
        workers=args.workers,
        **_server_options(config),
    )
    try:
        Supervisor(server_config, sockets=[server_config.bind_socket()]).run()
    finally:
        if metrics_dir is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _server_options(config: Config) -> dict[str, Any]:
    """uvicorn's settings, the same for one process and for workers."""
    return {
        "host": config.server.host,
        "port": config.server.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": config.server.keep_alive_s,
        "lifespan": "on",
    }


def _announce(config: Config, detail: str = "") -> None:
    url = f"http://{config.server.host}:{config.server.port}/graphql"
    print(f"tokengate: serving GraphQL on {url}{detail}", file=sys.stderr)
    if config.server.graphiql:
        from tokengate.gateway.graphiql_assets import candidate_dirs, is_installed, load_lock

        lock = load_lock()
        if not any(
            is_installed(d, lock) for d in candidate_dirs(config.server.graphiql_assets_dir)
        ):
            print(
                "tokengate: GraphiQL's files are not installed: run `tokengate graphiql install`",
                file=sys.stderr,
            )


def _workers(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 64:
        raise argparse.ArgumentTypeError("--workers must be between 1 and 64")
    return number


def _run(config: Config) -> None:
    import signal

    import uvicorn

    from tokengate.gateway.app import create_app

    app = create_app(config, freeze_heap=True, drain_on_sigterm=True)
    _announce(config)
    # uvicorn sends itself the SIGTERM it handled once it has shut down; it then finds
    # this handler: a drained, finished SIGTERM exits 0 (as it does under --workers).
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(app, **_server_options(config))


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


DEMO_TOKENS = [
    ("ci-deploy", ["tokens:read"], None),
    ("grafana-dashboard", ["tokens:read"], None),
    ("security-oncall", ["tokens:read", "tokens:write"], None),
    ("anna-self-service", ["tokens:read", "tokens:write"], "anna.de.vries@example.com"),
]


def _serve_demo(config: Config) -> int:
    import dataclasses
    import os
    import tempfile
    from pathlib import Path

    from tokengate.gateway import demo_idp
    from tokengate.gateway.app import open_store
    from tokengate.gateway.config import AuthConfig, JwtConfig, StoreConfig
    from tokengate.gateway.demo import demo_secret, simulators
    from tokengate.upstreams.loopback import free_port, serve_in_thread
    from tokengate.upstreams.model import CreateSpec
    from tokengate.upstreams.oauth.simulator import WALK_USER

    workdir = Path(tempfile.mkdtemp(prefix="tokengate-demo-"))
    secret = os.environ.get("TOKENGATE_BOOTSTRAP_TOKEN") or demo_secret()
    os.environ["TOKENGATE_BOOTSTRAP_TOKEN"] = secret
    store_config = StoreConfig(
        url=f"sqlite:///{workdir / 'demo.db'}", key_file=workdir / "demo.key"
    )

    async def seed() -> None:
        store = await open_store(dataclasses.replace(config, store=store_config))
        try:
            for name, scopes, subject in DEMO_TOKENS:
                await store.create(CreateSpec(name=name, scopes=tuple(scopes), subject=subject))
        finally:
            await store.aclose()

    asyncio.run(seed())
    # The demo identity provider: its issuer is its URL, so its port is chosen first.
    idp = demo_idp.DemoIdp.create(f"http://127.0.0.1:{free_port()}")
    idp.save(workdir)
    idp_port = int(idp.issuer.rsplit(":", 1)[1])
    with simulators() as running, serve_in_thread(demo_idp.app(idp), idp_port) as idp_url:
        demo = dataclasses.replace(
            config,
            store=store_config,
            sources=tuple(s.source for s in running.values()),
            auth=AuthConfig(
                jwt=JwtConfig(
                    issuer=idp.issuer,
                    audience=idp.audience,
                    jwks_url=idp.jwks_url,
                    algorithms=(demo_idp.ALGORITHM,),
                )
            ),
            # Demo only: a page on any origin may call it (a real deployment lists origins).
            server=config.server
            if config.server.cors_origins
            else dataclasses.replace(config.server, cors_origins=("*",)),
        )
        url = f"http://{demo.server.host}:{demo.server.port}/graphql"
        sample = idp.token(WALK_USER)
        print(
            "\n".join(
                [
                    "tokengate demo: simulated upstreams on loopback:",
                    *(f"  {key:6} {sim.provider:6} {sim.url}" for key, sim in running.items()),
                    f"GraphiQL:  {url}",
                    f'Header:    {{"Authorization": "Bearer {secret}"}}',
                    'Try:       { tokens(first: 20, filter: {userId: "anna.de.vries@example.com"}) '
                    "{ totalCount edges { node { name provider status createdAt } } "
                    "failedSources { source { key } reason } } }",
                    f"Identity provider (demo, no password): {idp_url}  "
                    "(GET /jwks; POST /token with JSON "
                    '{"subject": "USER", "scope": "tokens:read tokens:write"})',
                    f'Signed in as {WALK_USER} (JWT, 1 h): {{"Authorization": "Bearer {sample}"}}',
                    "More:      tokengate demo jwt --subject USER [--scope tokens:read]",
                    f"Data:      {workdir} (temporary)",
                ]
            ),
            file=sys.stderr,
        )
        try:
            demo_idp.announce(workdir, idp_url, url)
        except OSError as exc:  # a read-only home: `demo jwt` then needs --state-dir
            print(
                f"tokengate demo: cannot note the demo in {demo_idp.pointer_file()} "
                f"({exc.strerror}): use `tokengate demo jwt --state-dir {workdir} ...`",
                file=sys.stderr,
            )
        try:
            _run(demo)
        finally:
            demo_idp.withdraw(workdir)
    return 0


def _demo_jwt(args: argparse.Namespace) -> int:
    from tokengate.gateway import demo_idp

    try:
        state_dir = Path(args.state_dir) if args.state_dir else demo_idp.running_demo_dir()
        idp = demo_idp.DemoIdp.load(state_dir)
        scope = " ".join(args.scope) if args.scope else demo_idp.DEFAULT_SCOPE
        print(idp.token(args.subject, scope, ttl_s=args.ttl))
    except demo_idp.DemoIdpError as exc:
        print(f"tokengate: {exc}", file=sys.stderr)
        return 1
    return 0


def _ttl(value: str) -> int:
    seconds = int(value)
    if not 1 <= seconds <= 86_400:
        raise argparse.ArgumentTypeError("--ttl must be between 1 and 86400 seconds")
    return seconds


def _simulate(args: argparse.Namespace) -> int:
    import time

    from tokengate.gateway.demo import simulators
    from tokengate.upstreams import providers

    known = providers.names()
    chosen = tuple(args.provider or known)
    ports = {p: args.port + i for i, p in enumerate(known)} if args.port else None
    with simulators(chosen, count=args.count, ports=ports) as running:
        for sim in running.values():
            creds = ", ".join(f"{k}={v}" for k, v in sim.info.items())
            print(f"{sim.provider:6} {sim.url}  ({creds}; control: {sim.url}/_sim/requests)")
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


async def _create_token(args: argparse.Namespace, config: Config) -> dict[str, object]:
    from tokengate.gateway.app import open_store
    from tokengate.upstreams import ids
    from tokengate.upstreams.model import CreateSpec

    known = {"internal", *(s.key for s in config.sources)}
    unknown = [s for s in args.source or [] if s not in known]
    if unknown:
        raise ConfigError(
            f"--source {unknown[0]!r} is not a configured source (known: {sorted(known)})"
        )
    store = await open_store(config)
    try:
        created = await store.create(
            CreateSpec(
                name=args.name,
                scopes=tuple(args.scope),
                subject=args.subject,
                allowed_sources=frozenset(args.source) if args.source else None,
            )
        )
    finally:
        await store.aclose()
    token = created.token
    return {
        "id": ids.token_id(token.source, token.local_id),
        "secret": created.secret,
        "name": token.name,
        "scopes": list(token.scopes),
        "subject": args.subject,
        "allowedSources": sorted(args.source) if args.source else None,
        "createdAt": token.created_at.isoformat() if token.created_at else None,
    }


def _token_create(args: argparse.Namespace) -> int:
    from tokengate.upstreams.errors import TokengateError

    config = _load(args)
    try:
        out = asyncio.run(_create_token(args, config))
    except TokengateError as exc:
        print(f"tokengate: {exc.message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(out))
    else:
        print(f"id:     {out['id']}\nscopes: {', '.join(args.scope)}\nsecret: {out['secret']}")
        print("The secret is shown once; store it now.", file=sys.stderr)
    return 0


def _export_schema(_args: argparse.Namespace) -> int:
    from tokengate.schema.build import build_schema

    sys.stdout.write(build_schema().as_str() + "\n")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from tokengate.upstreams.store import create_engine, migrate
    from tokengate.upstreams.store.migrate import current_revision

    config = _load(args)

    async def run() -> str | None:
        engine = create_engine(config.store.url)
        try:
            await migrate(engine)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    print(f"tokengate: store at revision {asyncio.run(run())}")
    return 0


def _graphiql_install(args: argparse.Namespace) -> int:
    """Fetches GraphiQL's pinned files from the npm registry (or $TOKENGATE_NPM_REGISTRY),
    checks them against the lock, installs them where the gateway looks."""
    import os

    from tokengate.gateway import graphiql_assets

    if args.dir:
        directory = Path(args.dir)
    elif args.bundled:
        directory = graphiql_assets.bundled_dir()
    else:
        config = _load(args) if args.config or os.environ.get(config_module.CONFIG_ENV) else None
        configured = config.server.graphiql_assets_dir if config is not None else None
        directory = graphiql_assets.install_dir(configured)
    try:
        done = graphiql_assets.install(
            directory,
            force=args.force,
            say=lambda line: print(f"tokengate: {line}", file=sys.stderr),
        )
    except (graphiql_assets.AssetsError, OSError) as exc:
        print(f"tokengate: GraphiQL not installed: {exc}", file=sys.stderr)
        return 1
    state = "installed into" if done else "already installed in"
    print(f"tokengate: GraphiQL {state} {directory}", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    from tokengate.upstreams import providers

    known = providers.names()
    p = argparse.ArgumentParser(prog="tokengate", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", help="TOML config file (default: $TOKENGATE_CONFIG)")
        return sp

    serve = with_config(sub.add_parser("serve", help="serve the GraphQL API"))
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes on one socket (1..64; rate limits and the 2 s auth cache are per process)",
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help=f"start simulated upstreams ({', '.join(known)}) and wire the gateway to them",
    )
    serve.set_defaults(func=_serve)

    simulate = sub.add_parser("simulate", help="run the upstream simulators on loopback")
    simulate.add_argument("--provider", action="append", choices=known)
    simulate.add_argument(
        "--port", type=int, help=f"first port (one per provider, in order: {', '.join(known)})"
    )
    simulate.add_argument("--count", type=int, default=30, help="sample tokens per simulator")
    simulate.set_defaults(func=_simulate)

    token = sub.add_parser("token", help="manage internal tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = with_config(token_sub.add_parser("create", help="create an internal token"))
    create.add_argument("--name", required=True)
    create.add_argument("--scope", action="append", required=True, help="repeatable")
    create.add_argument("--subject", help="bind the token to this user id")
    create.add_argument("--source", action="append", help="bind to this source key (repeatable)")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.set_defaults(func=_token_create)

    export = sub.add_parser("export-schema", help="print the SDL of the served schema")
    export.set_defaults(func=_export_schema)

    from tokengate.gateway import export_cli

    export_cli.add_parser(sub)

    mig = with_config(sub.add_parser("migrate", help="apply store migrations"))
    mig.set_defaults(func=_migrate)

    demo = sub.add_parser("demo", help="helpers for `serve --demo`")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True)
    demo_jwt = demo_sub.add_parser(
        "jwt", help="print a JWT of the running demo's identity provider for a user"
    )
    demo_jwt.add_argument("--subject", required=True, help="the user id (the JWT's sub)")
    demo_jwt.add_argument(
        "--scope", action="append", help="repeatable (default: tokens:read tokens:write)"
    )
    demo_jwt.add_argument("--ttl", type=_ttl, default=3600, help="seconds (default 3600)")
    demo_jwt.add_argument(
        "--state-dir", help="the demo's data directory (default: the demo started last)"
    )
    demo_jwt.set_defaults(func=_demo_jwt)

    graphiql = sub.add_parser("graphiql", help="the GraphiQL page's files")
    graphiql_sub = graphiql.add_subparsers(dest="graphiql_command", required=True)
    install = with_config(
        graphiql_sub.add_parser(
            "install",
            help="fetch the pinned GraphiQL, React and React DOM from the npm registry "
            "($TOKENGATE_NPM_REGISTRY for a mirror), verify and install them",
        )
    )
    install.add_argument(
        "--dir",
        help="install here (default: $TOKENGATE_GRAPHIQL_ASSETS_DIR, [server] "
        "graphiql_assets_dir, else ~/.local/share/tokengate/graphiql)",
    )
    install.add_argument(
        "--bundled",
        action="store_true",
        help="install inside the installed package (an image's or a wheel's build step); "
        "found there without any setting",
    )
    install.add_argument("--force", action="store_true", help="fetch again even if installed")
    install.set_defaults(func=_graphiql_install)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"tokengate: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
