"""`croco serve`: the REST API, health and metrics on one port (plus the scheduler and bot as they land)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

import aiohttp
from aiohttp import web

from bot import app as slack
from bot.config import SlackConfig
from bot.context import BotContext
from bot.sink import SlackNoticeSink
from bot.tokens import SingleWorkspace
from croco.runtime import Runtime
from croco.scheduler import Tick, Ticker
from storage import migrate
from sync import firing, outbox
from sync.engine import SyncEngine, start_workers
from web.app import create_app
from web.context import WebContext
from web.webhooks import AiohttpWebhookSender

log = logging.getLogger(__name__)


def web_context(runtime: Runtime, engine: SyncEngine) -> WebContext:
    settings = runtime.settings
    return WebContext(
        db=runtime.db,
        secrets=runtime.secrets,
        api_token=settings.api_token.get_secret_value(),
        webhook_secret=settings.webhook_secret.get_secret_value(),
        providers=runtime.providers(),
        public_url=settings.public_url,
        engine=engine,
        oauth_clients=settings.oauth_clients,
        clock=runtime.clock,
    )


def slack_config(runtime: Runtime) -> SlackConfig:
    settings = runtime.settings
    return SlackConfig(
        bot_token=settings.slack_bot_token.get_secret_value(),
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        app_token=settings.slack_app_token.get_secret_value(),
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret.get_secret_value(),
        api_url=settings.slack_api_url,
        timeout_seconds=settings.http_timeout_seconds,
    )


async def mount_slack(runtime: Runtime, app: web.Application, ctx: WebContext) -> None:
    """The Slack app on the API's port, or one line saying why it is off (everything else runs)."""
    config = slack_config(runtime)
    if config.missing is not None:
        log.info(f"Slack app: disabled, {config.missing}; the API and sync run without it")
        return
    assert ctx.engine is not None
    home_team: str | None = None
    try:
        home_team = await slack.home_team(config)
    except Exception as exc:  # Slack down at start-up: the app still serves; the bot token's team binds later
        log.warning("Slack auth.test failed", extra={"error": type(exc).__name__})
    bot = BotContext(db=ctx.db, engine=ctx.engine, booking=ctx.booking, connect_links=ctx.connect_links,
                     actions=ctx.actions, clock=ctx.clock, oauth_clients=ctx.oauth_clients, home_team_id=home_team)
    app.add_routes(slack.routes(slack.build_app(bot, config)))
    if config.bot_token:  # notices become DMs: set before `serve` builds the ticker, whose "notices" job uses it
        runtime.notice_sink = SlackNoticeSink(SingleWorkspace(config.bot_token, home_team), config)
    log.info("Slack app: serving", extra={"path": slack.EVENTS_PATH, "team_id": home_team,
                                          "notices": runtime.notice_sink is not None})


def settle_startup_objects() -> None:
    """Keep what start-up built (modules, mappers, metadata) out of every later garbage collection: a
    free-slots request allocates thousands of rows, and a full collection scanning all of start-up's objects
    would otherwise land in some of them (measured: p95 from 40 to 90 ms, bench/availability.py)."""
    gc.collect()
    gc.freeze()


async def serve(
    runtime: Runtime, host: str, port: int, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run until SIGINT/SIGTERM (or `stop` is set). Migrations run first so a fresh database just works."""
    await migrate.upgrade(runtime.db.engine)
    engine = runtime.engine()
    context = web_context(runtime, engine)
    application = create_app(context)
    await mount_slack(runtime, application, context)  # before `_ticker`: it may set the notice sink
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("serving", extra={"url": f"http://{host}:{port}", "database": runtime.db.dialect})
    settle_startup_objects()
    start_workers(runtime.read_pool)

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with aiohttp.ClientSession() as http:
        ticker = _ticker(runtime, engine, http) if runtime.settings.scheduler_enabled else None
        if ticker is not None:
            ticker.start()
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            if ticker is not None:
                await ticker.stop()
            await runner.cleanup()
            await runtime.close()


def _ticker(runtime: Runtime, engine: SyncEngine, http: aiohttp.ClientSession) -> Ticker:
    send = AiohttpWebhookSender(http, timeout_seconds=runtime.settings.http_timeout_seconds)
    secret = runtime.settings.webhook_secret.get_secret_value()

    async def deliver() -> int:
        return await firing.deliver_due(runtime.db, send, secret, runtime.clock())

    ticks: dict[str, Tick] = {"sync": engine.run_due, "webhooks": deliver}
    if runtime.notice_sink is not None:
        ticks["notices"] = outbox.Outbox(runtime.db, runtime.notice_sink, owner=engine.owner,
                                         clock=runtime.clock).deliver_due
    return Ticker(ticks, runtime.settings.scheduler_tick_seconds, intervals={"notices": outbox.TICK_SECONDS})
