"""The `glimpse` command: `glimpse serve` runs the API server, `glimpse db upgrade` migrates."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from glimpse import config


def _settings(args: argparse.Namespace) -> config.Settings:
    overrides = {k: getattr(args, k, None) for k in ("host", "port", "data_dir", "workers")}
    return config.load(args.config, overrides=overrides)


def _upgrade(settings: config.Settings) -> None:
    from glimpse.registry.engine import make_engine
    from glimpse.registry.migrate import upgrade

    os.makedirs(settings.data_dir, exist_ok=True)
    engine = make_engine(settings.database)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def serve(args: argparse.Namespace) -> int:
    from glimpse import workers

    settings = _settings(args)
    _upgrade(settings)
    # Worker processes rebuild the same settings from the environment.
    os.environ["GLIMPSE_HOST"] = settings.host
    os.environ["GLIMPSE_PORT"] = str(settings.port)
    os.environ["GLIMPSE_DATA_DIR"] = settings.data_dir
    os.environ["GLIMPSE_WORKERS"] = str(settings.workers)
    if args.config:
        os.environ["GLIMPSE_CONFIG"] = str(args.config)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    try:
        return workers.serve(settings.host, settings.port, settings.processes,
                             settings.log_level)
    except OSError as exc:
        print(f"glimpse: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
              file=sys.stderr)
        return 1


def db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _upgrade(settings)
    print(f"database {settings.database} is at the newest revision")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glimpse", description="Glimpse image service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser(
        "serve",
        help="run the Images API v2 server",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the Images API v2 server. With no settings it listens on "
                    "127.0.0.1:9292 and keeps everything under ./data (SQLite + files).",
        epilog="settings (TOML file keys, environment variables, [defaults]):\n"
               + config.describe(),
    )
    for p in (serve_p,):
        p.add_argument("--host", help="address to listen on")
        p.add_argument("--port", type=int, help="port to listen on")
        p.add_argument("--workers", type=int, help="server processes (0: one per CPU core)")
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply schema migrations")
    for p in (serve_p, up):
        p.add_argument("--data-dir", dest="data_dir", help="folder for the database and images")
        p.add_argument("--config", help="TOML configuration file (or GLIMPSE_CONFIG)")
    serve_p.set_defaults(func=serve)
    up.set_defaults(func=db_upgrade)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except config.ConfigError as exc:
        print(f"glimpse: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
