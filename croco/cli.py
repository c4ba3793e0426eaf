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
    serve.add_argument("--socket-mode", action="store_true",
                       help="take Slack's requests over Socket Mode (CROCO_SLACK_APP_TOKEN), no public URL needed")

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.add_argument("--downgrade", action="store_true", help="downgrade to --revision (e.g. base)")

    sync = commands.add_parser("sync", help="run one sync cycle now for every selected calendar")
    sync.add_argument("--user", help="only this user's calendars")

    demo = commands.add_parser("demo", help="the product example end to end on a local CalDAV server")
    demo.add_argument("--port", type=int, default=8080, help="API port (a free one if this one is taken)")
    demo.add_argument("--once", action="store_true", help="exit after the walk-through instead of serving")

    commands.add_parser("check", help="say what is missing or wrong in the configuration")
    commands.add_parser("rotate-secrets", help="re-encrypt every stored secret with the first CROCO_SECRET_KEY key "
                                               "and remake the push channels (the README's run book)")
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
    from croco.serve import serve, slack_config, socket_mode_missing

    settings = _settings()
    if args.socket_mode and (missing := socket_mode_missing(slack_config(settings))) is not None:
        console.print(f"[red]error[/]  {missing}")
        return 2
    await serve(build_runtime(settings), args.host, args.port, socket_mode=args.socket_mode)
    return 0


async def _sync(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from croco.runtime import build_runtime
    from storage import migrate
    from sync.engine import CalendarReport

    runtime = build_runtime(_settings())
    failed = 0
    try:
        await migrate.upgrade(runtime.db.engine)
        engine = runtime.engine()
        calendar_ids = await engine.claim_now(args.user)
        with Progress(console=console) as progress:
            task = progress.add_task("syncing calendars", total=len(calendar_ids))

            def show(report: CalendarReport) -> None:
                t = report.tally
                if report.error:
                    progress.console.print(f"[red]{report.calendar_id}[/] {report.error}")
                else:
                    progress.console.print(
                        f"[green]{report.calendar_id}[/] fetched {t.fetched}, {t.blocked_slots} blocked slots, "
                        f"+{t.appointments_created} appointments, {t.contacts_created} new contacts, "
                        f"{t.pushed} pushed, {len(t.skipped)} skipped"
                    )
                progress.advance(task)

            reports = await engine.sync_claimed(calendar_ids, each=show)
        failed = sum(1 for report in reports if report.error)
        console.print(f"{len(calendar_ids)} calendar(s) synced, {failed} with errors")
    finally:
        await runtime.close()
    return 1 if failed else 0


async def _demo(args: argparse.Namespace) -> int:
    from croco.demo import run_demo
    from croco.embedded_caldav import free_port, port_is_free

    logs.configure("WARNING", "text")
    port = args.port if port_is_free(args.port) else free_port()
    await run_demo(port=port, keep_serving=not args.once, console=Console(soft_wrap=True))
    return 0


async def _rotate_secrets() -> int:
    """Step 3 of the run book's key rotation: once every process runs with `new,old`, nothing stored needs the old
    key afterwards. Safe to run again; a channel that could not be remade is named and tried again by a rerun."""
    from croco.runtime import build_runtime
    from storage import migrate
    from storage.rotation import reseal_all
    from sync.channels import PushChannels

    runtime = build_runtime(_settings())
    console = Console(stderr=True)
    try:
        await migrate.upgrade(runtime.db.engine)
        resealed = await reseal_all(runtime.db, runtime.secrets)
        console.print(f"{resealed.rotated} stored secret(s) re-encrypted with the newest key")
        for where, count in resealed.unreadable.items():
            console.print(f"[yellow]{count} value(s) in {where} open with no configured key: left as they are")
        channels = PushChannels(runtime.db, runtime.secrets, runtime.providers(), runtime.settings.public_url,
                                config=runtime.provider_config)
        upkeep = await channels.remake_all(runtime.clock())
        console.print(f"{len(upkeep.stopped)} push channel(s) stopped, {len(upkeep.created)} made again")
        for calendar_id in upkeep.failed:
            console.print(f"[red]push channel of calendar {calendar_id} not remade: run this command again")
        return 1 if upkeep.failed or resealed.unreadable else 0
    finally:
        await runtime.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return asyncio.run(_serve(args))
    if args.command == "migrate":
        return asyncio.run(_migrate(args))
    if args.command == "sync":
        return asyncio.run(_sync(args))
    if args.command == "demo":
        return asyncio.run(_demo(args))
    if args.command == "rotate-secrets":
        return asyncio.run(_rotate_secrets())
    return asyncio.run(_check())


if __name__ == "__main__":
    sys.exit(main())
