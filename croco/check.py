"""`croco check`: the configuration doctor. Says in plain words what is missing or wrong."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlparse

from pydantic import SecretStr

from croco.runtime import DEV_SECRETS_FILE
from croco.settings import Settings
from storage import migrate
from storage.db import Database
from storage.enums import Provider
from storage.secrets import SecretBox, SecretKeyError
from sync.channels import can_push, reaches
from sync.connect_links import callback_path
from sync.providers.base import InsecureEndpoint, is_loopback
from sync.providers.google.oauth import GoogleOAuth
from sync.providers.microsoft.oauth import MicrosoftOAuth


class Level(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    level: Level
    topic: str
    message: str


def _set(value: SecretStr | str) -> bool:
    return bool(value.get_secret_value() if isinstance(value, SecretStr) else value)


def _pair(topic: str, id_value: str, secret: SecretStr, what: str) -> Finding:
    """An OAuth client needs both halves; one without the other is a mistake, neither is a choice."""
    if _set(id_value) and _set(secret):
        return Finding(Level.OK, topic, f"{what} is configured")
    if _set(id_value) or _set(secret):
        missing = "client secret" if _set(id_value) else "client id"
        return Finding(Level.ERROR, topic, f"{what}: the {missing} is missing, so its OAuth flow cannot work")
    return Finding(Level.OK, topic, f"{what} is not configured; users cannot connect it")


def check_settings(settings: Settings) -> list[Finding]:
    """Checks that need no network or database."""
    findings: list[Finding] = []
    generated = [n for n in ("api_token", "secret_key", "webhook_secret") if not _set(getattr(settings, n))]
    if generated:
        findings.append(Finding(
            Level.WARNING, "secrets",
            f"{', '.join('CROCO_' + n.upper() for n in generated)} not set: development values are generated "
            f"and kept in {settings.data_dir / DEV_SECRETS_FILE}; set them for production",
        ))
    if _set(settings.secret_key):
        try:
            SecretBox(settings.secret_key.get_secret_value())
            findings.append(Finding(Level.OK, "secrets", "CROCO_SECRET_KEY holds valid Fernet keys"))
        except SecretKeyError as exc:
            findings.append(Finding(Level.ERROR, "secrets", f"CROCO_SECRET_KEY is unusable: {exc}"))
    if _set(settings.api_token) and len(settings.api_token.get_secret_value()) < 16:
        findings.append(Finding(Level.WARNING, "api", "CROCO_API_TOKEN is shorter than 16 characters"))

    public = urlparse(settings.public_url)
    if public.scheme not in ("http", "https") or not public.netloc:
        findings.append(Finding(Level.ERROR, "public_url", f"CROCO_PUBLIC_URL {settings.public_url!r} is not a URL"))
    elif public.scheme != "https":
        push = ("push channels are made for this loopback address (a local emulator)" if can_push(settings.public_url)
                else "no push channels are made, so calendars are only polled")
        findings.append(Finding(
            Level.WARNING, "public_url",
            f"CROCO_PUBLIC_URL is not https: Google and Microsoft push notifications and OAuth need https; {push}",
        ))

    findings.extend(check_slack(settings))
    findings.extend(check_google(settings))
    findings.extend(check_microsoft(settings))
    return findings


def check_microsoft(settings: Settings) -> list[Finding]:
    """Beyond its client id and secret, connecting Microsoft accounts needs the redirect URI registered (as a
    Web platform one, M6: 90-day refresh tokens) and an https authority, the only kind msal accepts."""
    pair = _pair("microsoft", settings.microsoft_client_id, settings.microsoft_client_secret,
                 "Microsoft 365 / Outlook")
    if "microsoft" not in settings.oauth_clients:
        return [pair]
    redirect = settings.public_url.rstrip("/") + callback_path(Provider.MICROSOFT)
    try:
        MicrosoftOAuth(settings.provider_config.microsoft, redirect)
    except InsecureEndpoint as exc:
        return [Finding(Level.ERROR, "microsoft", f"Microsoft sign-in cannot work: {exc}")]
    return [Finding(Level.OK, "microsoft", f"Microsoft 365 / Outlook is configured: register {redirect} as a Web "
                                           "redirect URI of its app registration (exactly this address)"),
            *check_push(settings, "microsoft")]


def check_google(settings: Settings) -> list[Finding]:
    """Beyond its client id and secret, connecting Google accounts needs the redirect URI registered with the
    client and a public URL Google accepts in one (https, or loopback for development); push channels are
    created only for an https or loopback public URL (API.md), else the poll alone keeps calendars fresh."""
    pair = _pair("google", settings.google_client_id, settings.google_client_secret, "Google Calendar")
    if "google" not in settings.oauth_clients:
        return [pair]
    public = settings.public_url.rstrip("/")
    redirect = public + callback_path(Provider.GOOGLE)
    findings = [Finding(Level.OK, "google", f"Google Calendar is configured: register {redirect} as an authorized "
                                            "redirect URI of its OAuth client (exactly this address)")]
    https, loopback = urlparse(public).scheme == "https", is_loopback(public)
    if not https and not loopback:
        findings.append(Finding(
            Level.WARNING, "google", f"CROCO_PUBLIC_URL is neither https nor a loopback address: Google refuses the "
            f"redirect URI {redirect}, so Croco offers no Google sign-in until it is https"))
    else:
        try:
            GoogleOAuth(settings.provider_config.google, redirect)
        except InsecureEndpoint as exc:
            findings.append(Finding(Level.ERROR, "google", f"Google sign-in cannot work: {exc}"))
    return findings + check_push(settings, "google")


PUSH_KINDS = {"google": ("Google", "push channels"), "microsoft": ("Microsoft", "change-notification subscriptions")}


def check_push(settings: Settings, provider: str) -> list[Finding]:
    """Whether a configured provider will call us on changes: only at an https public URL, or a loopback one
    when the provider itself is a loopback emulator (the real one cannot reach it); else calendars are polled."""
    name, channels = PUSH_KINDS[provider]
    public = settings.public_url.rstrip("/")
    if can_push(public) and not reaches(public, settings.provider_config.push_origins()[provider]):
        return [Finding(
            Level.WARNING, "push", f"{name} cannot call a loopback CROCO_PUBLIC_URL, so no {channels} are made and "
            f"{name} calendars are only polled (every {settings.sync_interval_seconds} s); use an https public URL")]
    if can_push(public):
        kind = "https" if urlparse(public).scheme == "https" else "a loopback address (an emulator)"
        return [Finding(Level.OK, "push", f"{name} {channels} will be created: CROCO_PUBLIC_URL is {kind}")]
    return [Finding(
        Level.WARNING, "push", f"no {name} {channels}: CROCO_PUBLIC_URL is neither https nor loopback, so "
        f"{name} calendars are only polled (every {settings.sync_interval_seconds} s)")]


def check_slack(settings: Settings) -> list[Finding]:
    """What each way of reaching Slack still lacks: HTTP (`croco serve`, Slack calls /slack/events) needs a bot
    token or an OAuth client plus the signing secret; Socket Mode (`croco serve --socket-mode`) needs a bot token
    plus an app-level token, and no signing secret."""
    bot, signing, app = (_set(settings.slack_bot_token), _set(settings.slack_signing_secret),
                         _set(settings.slack_app_token))
    client_id, client_secret = _set(settings.slack_client_id), _set(settings.slack_client_secret)
    if not any((bot, signing, app, client_id, client_secret)):
        return [Finding(Level.OK, "slack", "Slack is not configured; the bot is disabled, all else runs")]
    findings: list[Finding] = []
    if client_id != client_secret:
        missing = "CROCO_SLACK_CLIENT_SECRET" if client_id else "CROCO_SLACK_CLIENT_ID"
        findings.append(Finding(Level.ERROR, "slack", f"{missing} is missing, so /slack/install cannot work"))
    if bot and not settings.slack_bot_token.get_secret_value().startswith("xoxb-"):
        findings.append(Finding(Level.WARNING, "slack", "CROCO_SLACK_BOT_TOKEN does not start with xoxb-"))
    if app and not settings.slack_app_token.get_secret_value().startswith("xapp-"):
        findings.append(Finding(
            Level.WARNING, "slack", "CROCO_SLACK_APP_TOKEN does not start with xapp-: Socket Mode needs an app-level "
            "token (connections:write)"))
    installs = client_id and client_secret
    http_missing = [name for name, ok in (("CROCO_SLACK_BOT_TOKEN (or the OAuth client)", bot or installs),
                                          ("CROCO_SLACK_SIGNING_SECRET", signing)) if not ok]
    socket_missing = [name for name, ok in (("CROCO_SLACK_BOT_TOKEN", bot), ("CROCO_SLACK_APP_TOKEN", app)) if not ok]
    http = "HTTP (`croco serve`): " + ("ready" if not http_missing else "needs " + " and ".join(http_missing))
    socket = "Socket Mode (`croco serve --socket-mode`): " + (
        "ready" if not socket_missing else "needs " + " and ".join(socket_missing))
    if http_missing and socket_missing:
        findings.append(Finding(Level.ERROR, "slack", f"Slack is half configured. {http}; {socket}"))
    else:
        findings.append(Finding(Level.OK, "slack", f"{http}; {socket}"))
    return findings


async def check_database(settings: Settings) -> list[Finding]:
    url = settings.effective_database_url
    if url.startswith("sqlite") and not (settings.data_dir / "croco.db").exists() and not settings.database_url:
        return [Finding(Level.OK, "database", "the SQLite database will be created on first start")]
    database = Database(url)
    try:
        if not await database.ping():
            return [Finding(Level.ERROR, "database", "cannot connect to the database at CROCO_DATABASE_URL")]
        current, head = await migrate.current_revision(database.engine), migrate.head_revision()
        if current != head:
            return [Finding(
                Level.WARNING, "database",
                f"schema is at {current or 'nothing'}, code expects {head}: run `croco migrate` "
                "(`croco serve` also migrates on start)",
            )]
        return [Finding(Level.OK, "database", f"reachable, schema up to date ({database.dialect})")]
    finally:
        await database.dispose()
