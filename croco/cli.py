"""The `croco` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from rich.console import Console

from croco import logs
from croco.settings import Settings

console = Console(stderr=True, soft_wrap=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="croco", description="Croco calendar sync and scheduling service")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the REST API (and scheduler) on one port")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.add_argument("--downgrade", action="store_true", help="downgrade to --revision (e.g. base)")

    commands.add_parser("check", help="say what is missing or wrong in the configuration")
    return parser


def _settings() -> Settings:
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    return settings


async def _migrate(args: argparse.Namespace) -> int:
    from croco.runtime import build_runtime
    from storage import migrate

    runtime = build_runtime(_settings())
    try:
        if args.downgrade:
            await migrate.downgrade(runtime.db.engine, args.revision)
        else:
            await migrate.upgrade(runtime.db.engine, args.revision)
        console.print(f"database schema at [bold]{await migrate.current_revision(runtime.db.engine)}[/]")
    finally:
        await runtime.db.dispose()
    return 0


async def _check() -> int:
    from croco.check import Level, check_database, check_settings

    settings = _settings()
    findings = check_settings(settings) + await check_database(settings)
    style = {Level.OK: "green", Level.WARNING: "yellow", Level.ERROR: "red"}
    for finding in findings:
        console.print(f"[{style[finding.level]}]{finding.level:>7}[/]  {finding.topic:<10} {finding.message}")
    errors = sum(f.level is Level.ERROR for f in findings)
    console.print("configuration is usable" if not errors else f"{errors} problem(s) to fix")
    return 1 if errors else 0


async def _serve(args: argparse.Namespace) -> int:
    from croco.runtime import build_runtime
    from croco.serve import serve

    await serve(build_runtime(_settings()), args.host, args.port)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return asyncio.run(_serve(args))
    if args.command == "migrate":
        return asyncio.run(_migrate(args))
    return asyncio.run(_check())


if __name__ == "__main__":
    sys.exit(main())
