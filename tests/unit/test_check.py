"""`croco check` says in plain words what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from croco.check import Level, check_database, check_settings
from croco.settings import Settings
from storage.secrets import generate_key


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[call-arg]


def _errors(settings: Settings) -> dict[str, str]:
    return {f.topic: f.message for f in check_settings(settings) if f.level is Level.ERROR}


def test_no_configuration_is_usable_with_warnings(tmp_path: Path) -> None:
    findings = check_settings(_settings(tmp_path))
    assert not [f for f in findings if f.level is Level.ERROR]
    assert any(f.topic == "secrets" and f.level is Level.WARNING for f in findings)


def test_half_configured_oauth_client_names_the_missing_half(tmp_path: Path) -> None:
    errors = _errors(_settings(tmp_path, google_client_id="abc.apps.googleusercontent.com"))
    assert "client secret is missing" in errors["google"]


def test_bad_secret_key_and_half_slack_are_errors(tmp_path: Path) -> None:
    errors = _errors(_settings(tmp_path, secret_key=SecretStr("nope"), slack_signing_secret=SecretStr("x" * 32)))
    assert "CROCO_SECRET_KEY is unusable" in errors["secrets"]
    assert "half configured" in errors["slack"]


def test_complete_configuration_has_no_findings_below_ok(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        api_token=SecretStr("t" * 32), secret_key=SecretStr(generate_key()), webhook_secret=SecretStr("w" * 32),
        public_url="https://croco.example.com",
    )
    assert {f.level for f in check_settings(settings)} == {Level.OK}


async def test_unmigrated_database_is_reported(tmp_path: Path, database_url: str) -> None:
    findings = await check_database(_settings(tmp_path, database_url=database_url))
    assert findings[0].level is Level.WARNING and "croco migrate" in findings[0].message


async def test_unreachable_database_is_an_error(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
    findings = await check_database(_settings(tmp_path, database_url=url))
    assert findings[0].level is Level.ERROR


def test_only_an_oauth_client_with_id_and_secret_counts_as_configured(tmp_path: Path) -> None:
    """Connect links for Google and Microsoft answer provider_not_configured unless this lists them."""
    assert _settings(tmp_path).oauth_clients == frozenset()
    half = _settings(tmp_path, google_client_id="abc.apps.googleusercontent.com",
                     microsoft_client_secret=SecretStr("s3cret"))
    assert half.oauth_clients == frozenset()
    both = _settings(tmp_path, microsoft_client_id="0000-1111", microsoft_client_secret=SecretStr("s3cret"))
    assert both.oauth_clients == frozenset({"microsoft"})


def _slack(settings: Settings) -> list[tuple[Level, str]]:
    return [(f.level, f.message) for f in check_settings(settings) if f.topic == "slack"]


def test_slack_says_what_http_and_socket_mode_each_still_need(tmp_path: Path) -> None:
    bot = SecretStr("xoxb-1-2")
    http_only = _slack(_settings(tmp_path, slack_bot_token=bot, slack_signing_secret=SecretStr("s" * 32)))
    assert http_only == [(Level.OK, "HTTP (`croco serve`): ready; Socket Mode (`croco serve --socket-mode`): "
                                    "needs CROCO_SLACK_APP_TOKEN")]
    socket_only = _slack(_settings(tmp_path, slack_bot_token=bot, slack_app_token=SecretStr("xapp-1-2")))
    assert socket_only == [(Level.OK, "HTTP (`croco serve`): needs CROCO_SLACK_SIGNING_SECRET; Socket Mode "
                                      "(`croco serve --socket-mode`): ready")]
    ((level, message),) = _slack(_settings(tmp_path, slack_bot_token=bot))
    assert level is Level.ERROR
    assert "CROCO_SLACK_SIGNING_SECRET" in message and "CROCO_SLACK_APP_TOKEN" in message


def test_slack_installs_serve_http_but_socket_mode_needs_a_bot_token(tmp_path: Path) -> None:
    found = _slack(_settings(tmp_path, slack_client_id="1.2", slack_client_secret=SecretStr("c" * 32),
                             slack_signing_secret=SecretStr("s" * 32)))
    assert found == [(Level.OK, "HTTP (`croco serve`): ready; Socket Mode (`croco serve --socket-mode`): needs "
                                "CROCO_SLACK_BOT_TOKEN and CROCO_SLACK_APP_TOKEN")]


def test_a_bot_token_where_the_app_token_belongs_is_flagged(tmp_path: Path) -> None:
    found = _slack(_settings(tmp_path, slack_bot_token=SecretStr("xoxb-1"), slack_app_token=SecretStr("xoxb-1")))
    assert (Level.WARNING, "CROCO_SLACK_APP_TOKEN does not start with xapp-: Socket Mode needs an app-level token "
                           "(connections:write)") in found


GOOGLE_CLIENT = {"google_client_id": "abc.apps.googleusercontent.com", "google_client_secret": SecretStr("s3cret")}


def _google(settings: Settings) -> list[tuple[Level, str, str]]:
    return [(f.level, f.topic, f.message) for f in check_settings(settings) if f.topic in ("google", "push")]


def test_google_names_the_redirect_uri_to_register_and_says_push_channels_will_be_made(tmp_path: Path) -> None:
    found = _google(_settings(tmp_path, public_url="https://croco.example.com/", **GOOGLE_CLIENT))
    assert found == [
        (Level.OK, "google", "Google Calendar is configured: register https://croco.example.com/oauth/google/callback "
                             "as an authorized redirect URI of its OAuth client (exactly this address)"),
        (Level.OK, "push", "Google push channels will be created: CROCO_PUBLIC_URL is https"),
    ]


def test_a_loopback_public_url_with_the_real_google_says_push_cannot_reach_it(tmp_path: Path) -> None:
    found = _google(_settings(tmp_path, public_url="http://127.0.0.1:8080", **GOOGLE_CLIENT))
    warnings = {topic: message for level, topic, message in found if level is Level.WARNING}
    assert warnings["push"].startswith("Google cannot call a loopback CROCO_PUBLIC_URL")


def test_a_loopback_public_url_is_fine_for_google_and_push_goes_to_an_emulator(tmp_path: Path) -> None:
    found = _google(_settings(tmp_path, public_url="http://127.0.0.1:8080", google_api_url="http://127.0.0.1:9/",
                              **GOOGLE_CLIENT))
    assert [level for level, _, _ in found] == [Level.OK, Level.OK]
    assert "register http://127.0.0.1:8080/oauth/google/callback" in found[0][2]
    assert found[1][2] == "Google push channels will be created: CROCO_PUBLIC_URL is a loopback address (an emulator)"


def test_a_plain_http_public_url_is_refused_by_google_and_gets_no_push(tmp_path: Path) -> None:
    found = _google(_settings(tmp_path, public_url="http://croco.internal:8080", sync_interval_seconds=120,
                              **GOOGLE_CLIENT))
    warnings = {topic: message for level, topic, message in found if level is Level.WARNING}
    assert "Google refuses the redirect URI http://croco.internal:8080/oauth/google/callback" in warnings["google"]
    assert warnings["push"] == ("no Google push channels: CROCO_PUBLIC_URL is neither https nor loopback, so Google "
                                "calendars are only polled (every 120 s)")


def test_a_plain_http_google_endpoint_off_this_machine_is_an_error(tmp_path: Path) -> None:
    errors = _errors(_settings(tmp_path, public_url="https://croco.example.com",
                               google_token_url="http://oauth.example.com/token", **GOOGLE_CLIENT))
    assert errors["google"] == ("Google sign-in cannot work: CROCO_GOOGLE_TOKEN_URL must be an https URL "
                                "(http only for a loopback address)")


def test_google_without_its_client_says_nothing_of_redirects_or_push(tmp_path: Path) -> None:
    assert _google(_settings(tmp_path, public_url="http://croco.internal")) == [
        (Level.OK, "google", "Google Calendar is not configured; users cannot connect it")]


@pytest.mark.parametrize(("public_url", "says"), [
    ("http://127.0.0.1:8080", "push channels are made for this loopback address"),
    ("http://croco.internal:8080", "no push channels are made, so calendars are only polled"),
])
def test_a_public_url_that_is_not_https_says_whether_push_works(tmp_path: Path, public_url: str, says: str) -> None:
    (finding,) = [f for f in check_settings(_settings(tmp_path, public_url=public_url)) if f.topic == "public_url"]
    assert finding.level is Level.WARNING and says in finding.message


MICROSOFT_CLIENT = {"microsoft_client_id": "0000-1111", "microsoft_client_secret": SecretStr("s3cret")}


def _microsoft(settings: Settings) -> list[tuple[Level, str]]:
    return [(f.level, f.message) for f in check_settings(settings) if f.topic == "microsoft"]


def test_microsoft_names_the_redirect_uri_to_register(tmp_path: Path) -> None:
    assert _microsoft(_settings(tmp_path, public_url="https://croco.example.com/", **MICROSOFT_CLIENT)) == [
        (Level.OK, "Microsoft 365 / Outlook is configured: register https://croco.example.com/oauth/microsoft/callback"
                   " as a Web redirect URI of its app registration (exactly this address)")]


@pytest.mark.parametrize(("public_url", "graph_url", "says"), [
    ("https://croco.example.com", "https://graph.microsoft.com/v1.0/",
     (Level.OK, "Microsoft change-notification subscriptions will be created: CROCO_PUBLIC_URL is https")),
    ("http://127.0.0.1:8080", "https://graph.microsoft.com/v1.0/",
     (Level.WARNING, "Microsoft cannot call a loopback CROCO_PUBLIC_URL, so no change-notification subscriptions are "
                     "made and Microsoft calendars are only polled (every 120 s); use an https public URL")),
    ("http://127.0.0.1:8080", "https://127.0.0.1:9443/v1.0/",
     (Level.OK, "Microsoft change-notification subscriptions will be created: CROCO_PUBLIC_URL is a loopback "
                "address (an emulator)")),
    ("http://croco.internal:8080", "https://graph.microsoft.com/v1.0/",
     (Level.WARNING, "no Microsoft change-notification subscriptions: CROCO_PUBLIC_URL is neither https nor "
                     "loopback, so Microsoft calendars are only polled (every 120 s)")),
])
def test_microsoft_says_whether_graph_can_notify_us(tmp_path: Path, public_url: str, graph_url: str,
                                                    says: tuple[Level, str]) -> None:
    settings = _settings(tmp_path, public_url=public_url, microsoft_graph_url=graph_url, sync_interval_seconds=120,
                         **MICROSOFT_CLIENT)
    assert [(f.level, f.message) for f in check_settings(settings) if f.topic == "push"] == [says]


def test_an_http_microsoft_authority_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    errors = _errors(_settings(tmp_path, microsoft_authority="http://127.0.0.1:9/common", **MICROSOFT_CLIENT))
    assert errors["microsoft"] == ("Microsoft sign-in cannot work: CROCO_MICROSOFT_AUTHORITY must be an https URL "
                                   "(msal accepts no other)")


def test_microsoft_without_its_client_says_nothing_of_redirects(tmp_path: Path) -> None:
    assert _microsoft(_settings(tmp_path, microsoft_authority="http://127.0.0.1:9/common")) == [
        (Level.OK, "Microsoft 365 / Outlook is not configured; users cannot connect it")]
