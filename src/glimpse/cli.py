"""The `glimpse` command: `glimpse serve` runs the API server, `glimpse db upgrade` migrates,
`glimpse token create|list|revoke` manage the API tokens of `auth = tokens`.

Exit status: 0 done, 1 failed (e.g. no such token), 2 a configuration or usage error."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from glimpse import config
from glimpse.tokens import TokenFile, TokenFileError


def _settings(args: argparse.Namespace) -> config.Settings:
    overrides = {k: getattr(args, k, None)
                 for k in ("host", "port", "data_dir", "workers", "auth",
                           "allow_noauth_on_network")}
    return config.load(args.config, overrides=overrides)


def _upgrade(settings: config.Settings) -> None:
    from glimpse.registry.engine import make_engine
    from glimpse.registry.migrate import upgrade

    try:
        os.makedirs(settings.data_dir, exist_ok=True)
    except OSError as exc:
        raise config.ConfigError(f"data_dir: cannot create {settings.data_dir!r}: "
                                 f"{exc.strerror}") from exc
    engine = make_engine(settings.database)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def _check_stores(settings: config.Settings) -> None:
    """Every configured store answers and takes writes, or serve does not start."""
    import asyncio

    from glimpse.stores import catalog

    try:
        asyncio.run(catalog.check(catalog.build(settings.store_specs)))
    except catalog.StoreConfigError as exc:
        raise config.ConfigError(str(exc)) from exc


def _check_conversion(settings: config.Settings) -> None:
    """With conversion on import configured, qemu-img (and prlimit) are installed."""
    if not settings.image_conversion_output_format:
        return
    from glimpse.services.conversion import ConversionFailed, find_qemu_img

    try:
        find_qemu_img(settings.conversion)
    except ConversionFailed as exc:
        raise config.ConfigError(f"image_conversion_output_format: {exc.message}") from exc


def serve(args: argparse.Namespace) -> int:
    from glimpse import workers

    settings = _settings(args)
    _check_conversion(settings)
    _upgrade(settings)
    _check_stores(settings)
    # Worker processes rebuild the same settings from the environment.
    os.environ["GLIMPSE_HOST"] = settings.host
    os.environ["GLIMPSE_PORT"] = str(settings.port)
    os.environ["GLIMPSE_DATA_DIR"] = settings.data_dir
    os.environ["GLIMPSE_WORKERS"] = str(settings.workers)
    os.environ["GLIMPSE_AUTH"] = settings.auth
    os.environ["GLIMPSE_ALLOW_NOAUTH_ON_NETWORK"] = str(settings.allow_noauth_on_network)
    if args.config:
        os.environ["GLIMPSE_CONFIG"] = str(args.config)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    if settings.auth == "keystone":
        from glimpse.api.keystone import check_service_account

        warning = check_service_account(settings)  # refuses credentials that cannot work
        if warning:
            logging.getLogger("glimpse.keystone").warning(warning)
    try:
        return workers.serve(settings)
    except OSError as exc:
        print(f"glimpse: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
              file=sys.stderr)
        return 1


def db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _upgrade(settings)
    print(f"database {settings.database} is at the newest revision")
    return 0


def _token_file(args: argparse.Namespace) -> TokenFile:
    return TokenFile(_settings(args).tokens_path)


def token_create(args: argparse.Namespace) -> int:
    entry, token = _token_file(args).create(args.project, args.user, args.roles.split(","),
                                            args.description or "")
    print(token)
    print(f"created token {entry.id} for user {entry.user} in project {entry.project} "
          f"(roles {','.join(entry.roles)}); it is shown only this once", file=sys.stderr)
    return 0


def token_list(args: argparse.Namespace) -> int:
    tokens = _token_file(args).load()
    print(f"{'ID':<16}  {'PROJECT':<20}  {'USER':<20}  {'ROLES':<20}  {'CREATED':<20}  "
          "DESCRIPTION")
    for t in sorted(tokens.values(), key=lambda t: (t.created_at, t.id)):
        print(f"{t.id:<16}  {t.project:<20}  {t.user:<20}  {','.join(t.roles):<20}  "
              f"{t.created_at:<20}  {t.description}")
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    try:
        entry = _token_file(args).revoke(args.id)
    except KeyError:
        print(f"glimpse: no token {args.id!r}", file=sys.stderr)
        return 1
    print(f"revoked token {entry.id} (user {entry.user}, project {entry.project})")
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
        p.add_argument("--auth", choices=config.AUTH_MODES,
                       help="authentication mode (docs/identity.md)")
        p.add_argument("--insecure-noauth", dest="allow_noauth_on_network",
                       action="store_const", const=True,
                       help="serve noauth (every caller an admin) on a non-loopback host")
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply schema migrations")
    token = sub.add_parser("token", help="API tokens of auth = tokens (the token file)")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token and print it (only this once)")
    create.add_argument("--project", required=True, help="project the token acts for")
    create.add_argument("--user", required=True, help="user the token stands for")
    create.add_argument("--roles", required=True, help="comma-separated roles, e.g. member,reader")
    create.add_argument("--description", help="a note shown by `token list`")
    listing = token_sub.add_parser("list", help="list the tokens (never their secrets)")
    revoke = token_sub.add_parser("revoke", help="revoke a token; running servers stop taking it")
    revoke.add_argument("id", help="the token's id, as `token list` shows it")
    for p in (serve_p, up, create, listing, revoke):
        p.add_argument("--data-dir", dest="data_dir", help="folder for the database and images")
        p.add_argument("--config", help="TOML configuration file (or GLIMPSE_CONFIG)")
    serve_p.set_defaults(func=serve)
    up.set_defaults(func=db_upgrade)
    create.set_defaults(func=token_create)
    listing.set_defaults(func=token_list)
    revoke.set_defaults(func=token_revoke)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except config.ConfigError as exc:
        print(f"glimpse: configuration error: {exc}", file=sys.stderr)
        return 2
    except TokenFileError as exc:
        print(f"glimpse: token file: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
