"""`croco serve`: the REST API, health and metrics on one port (plus the scheduler and bot as they land)."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal

from aiohttp import web

from croco.runtime import Runtime
from storage import migrate
from sync.providers.registry import open_provider
from web.app import create_app
from web.context import WebContext

log = logging.getLogger(__name__)


def web_context(runtime: Runtime) -> WebContext:
    settings = runtime.settings
    return WebContext(
        db=runtime.db,
        secrets=runtime.secrets,
        api_token=settings.api_token.get_secret_value(),
        webhook_secret=settings.webhook_secret.get_secret_value(),
        providers=functools.partial(open_provider, config=runtime.provider_config),
        public_url=settings.public_url,
    )


def slack_status(runtime: Runtime) -> str:
    if runtime.settings.slack_bot_token.get_secret_value():
        return "Slack bot: configured (delivery lands with the Slack issue)"
    return "Slack bot: disabled, no CROCO_SLACK_BOT_TOKEN; the API and sync run without it"


async def serve(runtime: Runtime, host: str, port: int, *, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM. Migrations run first so a fresh database just works."""
    await migrate.upgrade(runtime.db.engine)
    runner = web.AppRunner(create_app(web_context(runtime)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("serving", extra={"url": f"http://{host}:{port}", "database": runtime.db.dialect})
    log.info(slack_status(runtime))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()
        await runtime.db.dispose()
