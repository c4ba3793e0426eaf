"""`croco serve`: the REST API, health and metrics on one port (plus the scheduler and bot as they land)."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import signal

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from bot import app as slack
from bot import install
from bot.authorize import BotIdentity, identify
from bot.config import SlackConfig
from bot.context import BotContext
from bot.sink import SlackNoticeSink
from croco.runtime import Runtime
from croco.scheduler import Tick, Ticker
from croco.settings import Settings
from storage import migrate
from sync import agenda, channels, firing, outbox
from sync.calendar_lists import CalendarLists
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
        provider_config=runtime.provider_config,
        clock=runtime.clock,
    )


def slack_config(settings: Settings) -> SlackConfig:
    return SlackConfig(
        bot_token=settings.slack_bot_token.get_secret_value(),
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        app_token=settings.slack_app_token.get_secret_value(),
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret.get_secret_value(),
        api_url=settings.slack_api_url,
        timeout_seconds=settings.http_timeout_seconds,
        public_url=settings.public_url,
    )


def socket_mode_missing(config: SlackConfig) -> str | None:
    """Why `--socket-mode` cannot start, in one line; None when it can. No signing secret is needed: the
    connection itself is authenticated by the app-level token."""
    if not config.app_token:
        return "--socket-mode needs CROCO_SLACK_APP_TOKEN (an xapp- app-level token with connections:write)"
    if not config.bot_token:
        return "--socket-mode needs CROCO_SLACK_BOT_TOKEN (the workspace the socket serves)"
    return None


async def mount_slack(runtime: Runtime, app: web.Application, ctx: WebContext, *,
                      socket_mode: bool = False) -> AsyncApp | None:
    """The Slack app on the API's port, or one line saying why it is off (everything else runs). With
    `socket_mode` the app is returned for the socket; `/slack/events` is served too only with a signing secret
    (without one, any request could be "signed")."""
    config = slack_config(runtime.settings)
    missing = socket_mode_missing(config) if socket_mode else config.missing
    if missing is not None:
        log.info(f"Slack app: disabled, {missing}; the API and sync run without it")
        return None
    assert ctx.engine is not None
    home: BotIdentity | None = None
    try:
        home = await identify(config)
    except Exception as exc:  # Slack down at start-up: the app still serves; its bot token serves any team
        log.warning("Slack auth.test failed", extra={"error": type(exc).__name__})
    home_team = home.team_id if home else None
    bot = BotContext(db=ctx.db, engine=ctx.engine, booking=ctx.booking, connect_links=ctx.connect_links,
                     actions=ctx.actions, clock=ctx.clock, oauth_clients=ctx.oauth_clients, home_team_id=home_team,
                     settings_saved=ctx.settings_saved)
    installs = install.installs(config, runtime.db.engine, runtime.secrets)  # None: single-workspace only
    bolt = slack.build_app(bot, config, home, installs)
    if config.signing_secret:
        app.add_routes(slack.routes(bolt))
    # notices become DMs: set before `serve` builds the ticker, whose "notices" job uses it
    runtime.notice_sink = SlackNoticeSink(install.bot_tokens(config, home_team, installs), config)
    log.info("Slack app: serving", extra={"path": slack.EVENTS_PATH if config.signing_secret else None,
                                          "team_id": home_team, "installs": installs is not None})
    return bolt


def start_socket_mode(bolt: AsyncApp, config: SlackConfig) -> tuple[AsyncSocketModeHandler, asyncio.Task[None]]:
    """Connect to Slack over Socket Mode in the background (slack_sdk retries until it is through), so the API
    serves at once even while Slack is unreachable. `apps.connections.open` goes to CROCO_SLACK_API_URL."""
    handler = AsyncSocketModeHandler(bolt, config.app_token, web_client=config.client(config.bot_token))

    async def connect() -> None:
        await handler.connect_async()  # type: ignore[no-untyped-call]
        log.info("Slack app: connected over Socket Mode")

    return handler, asyncio.create_task(connect(), name="slack-socket-mode")


async def stop_socket_mode(handler: AsyncSocketModeHandler, connecting: asyncio.Task[None]) -> None:
    connecting.cancel()
    await asyncio.gather(connecting, return_exceptions=True)
    await handler.close_async()  # type: ignore[no-untyped-call]


CALENDAR_LISTS_TICK_SECONDS = 300.0
"""How often serve looks for connections whose calendar list is over an hour old."""
GC_THRESHOLDS = (50_000, 20, 10)
"""Python's are (700, 10, 10): a 10,000-event import then ran three full collections of 130-190 ms each, holding
the event loop (and every Slack ack) that long. Young collections 70 times rarer make none happen during it
(measured, bench/slack.py); cyclic garbage is still collected, a full collection after some 10 million objects."""


def settle_startup_objects() -> None:
    """Keep what start-up built (modules, mappers, metadata) out of every later garbage collection: a
    free-slots request allocates thousands of rows, and a full collection scanning all of start-up's objects
    would otherwise land in some of them (measured: p95 from 40 to 90 ms, bench/availability.py). Then collect
    less often (GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(
    runtime: Runtime, host: str, port: int, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None,
    socket_mode: bool = False,
) -> None:
    """Run until SIGINT/SIGTERM (or `stop` is set). Migrations run first so a fresh database just works.
    `socket_mode`: Slack's requests come over a websocket opened with CROCO_SLACK_APP_TOKEN (no public URL)."""
    await migrate.upgrade(runtime.db.engine)
    engine = runtime.engine()
    context = web_context(runtime, engine)
    application = create_app(context)
    # before `_ticker`: it sets the notice sink
    bolt = await mount_slack(runtime, application, context, socket_mode=socket_mode)
    socket = start_socket_mode(bolt, slack_config(runtime.settings)) if socket_mode and bolt is not None else None
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
        ticker = _ticker(runtime, engine, http, context.channels) if runtime.settings.scheduler_enabled else None
        if ticker is not None:
            context.run_sync = functools.partial(ticker.run_soon, "sync")  # a push notification made some due
            context.run_channels = functools.partial(ticker.run_soon, "channels")  # settings chose some to watch
            context.scheduler = ticker
            ticker.start()
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            if ticker is not None:
                await ticker.stop()
            if socket is not None:
                await stop_socket_mode(*socket)
            await runner.cleanup()
            await runtime.close()


def _ticker(runtime: Runtime, engine: SyncEngine, http: aiohttp.ClientSession,
            push: channels.PushChannels | None = None) -> Ticker:
    send = AiohttpWebhookSender(http, timeout_seconds=runtime.settings.http_timeout_seconds)
    secret = runtime.settings.webhook_secret.get_secret_value()

    async def deliver() -> int:
        return await firing.deliver_due(runtime.db, send, secret, runtime.clock())

    async def agendas() -> int:
        return await agenda.write_due_agendas(runtime.db, runtime.clock())

    async def calendar_lists() -> object:
        return await CalendarLists(runtime.db, runtime.secrets, engine.providers).refresh_due(runtime.clock())

    ticks: dict[str, Tick] = {"sync": engine.run_due, "webhooks": deliver, "calendar-lists": calendar_lists}
    if push is not None:  # `croco serve` passes the web context's, whose disconnects stop channels too
        ticks["channels"] = lambda: push.renew(runtime.clock())
    if runtime.notice_sink is not None:
        ticks["notices"] = outbox.Outbox(runtime.db, runtime.notice_sink, owner=engine.owner,
                                         clock=runtime.clock).deliver_due
        ticks["agenda"] = agendas  # no sink, no agenda: one delivered days later would mislead
    return Ticker(ticks, runtime.settings.scheduler_tick_seconds,
                  intervals={"notices": outbox.TICK_SECONDS, "agenda": agenda.TICK_SECONDS,
                             "calendar-lists": CALENDAR_LISTS_TICK_SECONDS, "channels": channels.TICK_SECONDS})
