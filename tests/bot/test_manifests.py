"""The Slack manifests are valid for Slack and agree with the code, both ways.

Valid: both YAML files pass Slack's published JSON schema (vendored, resolved offline). Agreeing: the command,
action ids, view callbacks, options actions and events the app registers (recorded while `build_app` runs) are
exactly bot/ids.py's and the manifests'; and the served app answers every one of them (Bolt's 404 means "no
listener"), while an unknown action id is a 404."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from slack_bolt.async_app import AsyncApp

from bot import app as slack
from bot import commands
from bot.authorize import BotIdentity
from bot.ids import OPTIONS_ACTIONS, Action, ViewCallback
from tests.bot.conftest import ANN, SlackWorld
from tests.emulators.slack import BOT_ID, BOT_USER_ID, TEAM_ID

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = {"dev": ROOT / "manifests" / "slack-dev.yaml", "prod": ROOT / "manifests" / "slack-prod.yaml"}
SCHEMA_DIR = ROOT / "tests" / "vendor" / "slack-manifest-schema"
SCHEMA_URL = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/manifest.schema.{}.json"
PROD_URL = "https://croco.example.com/slack/events"
BOT_SCOPES = {"commands", "chat:write", "im:write", "im:history", "users:read", "users:read.email"}


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def validator() -> jsonschema.Draft7Validator:
    """Slack's root schema with its raw-GitHub `$ref`s served from the vendored copies (no retrieval at all)."""
    registry: Registry[Any] = Registry().with_resources(
        (SCHEMA_URL.format(version), Resource.from_contents(
            json.loads((SCHEMA_DIR / "schemas" / f"manifest.schema.{version}.json").read_text()),
            default_specification=DRAFT7))
        for version in ("1.0.0", "2.0.0")
    )
    return jsonschema.Draft7Validator(json.loads((SCHEMA_DIR / "manifest.schema.json").read_text()),
                                      registry=registry)


def problems(manifest: dict[str, Any]) -> list[str]:
    """Every leaf error (the root schema is a oneOf over versions, so the causes sit in its context)."""
    def leaves(error: jsonschema.ValidationError) -> Iterator[jsonschema.ValidationError]:
        if not error.context:
            yield error
        for sub in error.context or ():
            yield from leaves(sub)

    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for error in validator().iter_errors(manifest) for e in leaves(error)]


@pytest.fixture(params=sorted(MANIFESTS))
def manifest(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _load(MANIFESTS[request.param])


def test_both_manifests_pass_slacks_schema(manifest: dict[str, Any]) -> None:
    assert problems(manifest) == []


@pytest.mark.parametrize("breakage", ["unknown top-level key", "40-character name", "command without slash"])
def test_a_broken_manifest_fails_the_schema(breakage: str) -> None:
    broken = copy.deepcopy(_load(MANIFESTS["prod"]))
    if breakage == "unknown top-level key":
        broken["slash_commands"] = broken["features"]["slash_commands"]
    elif breakage == "40-character name":
        broken["display_information"]["name"] = "C" * 40
    else:
        broken["features"]["slash_commands"][0]["command"] = "croco"
    found = problems(broken)
    assert found, breakage
    expected = {"unknown top-level key": "slash_commands", "40-character name": "is too long",
                "command without slash": "does not match"}[breakage]
    assert any(expected in problem for problem in found), found


# What the code registers -----------------------------------------------------------------------------------


@dataclass
class Registered:
    """What `build_app` asked Bolt to listen to, by kind, as ids (a regex or a dict is kept as its text so it
    shows up as a mismatch: listeners must use the literal ids of bot/ids.py)."""

    kinds: dict[str, set[str]] = field(default_factory=dict)

    def __getitem__(self, kind: str) -> set[str]:
        return self.kinds.get(kind, set())


KINDS = {"command": "command", "action": "action", "block_action": "action", "view": "view",
         "view_submission": "view", "view_closed": "view", "options": "options", "block_suggestion": "options",
         "event": "event", "message": "event", "shortcut": "shortcut", "global_shortcut": "shortcut",
         "message_shortcut": "shortcut"}


def _as_id(kind: str, constraint: Any) -> str:
    if isinstance(constraint, str):
        return "message" if kind == "message" else constraint
    if isinstance(constraint, dict):
        for key in ("action_id", "callback_id", "type"):
            if isinstance(constraint.get(key), str):
                return str(constraint[key])
    if isinstance(constraint, re.Pattern):
        return f"re:{constraint.pattern}"
    return repr(constraint)


def registered(world: SlackWorld, monkeypatch: pytest.MonkeyPatch) -> Registered:
    """Build the app once more while recording every listener registration (enable_token_revocation_listeners
    goes through `event` too)."""
    found = Registered()

    def recording(method: str, kind: str) -> Callable[..., Any]:
        original = getattr(AsyncApp, method)

        def record(self: AsyncApp, constraint: Any = None, *args: Any, **kwargs: Any) -> Any:
            found.kinds.setdefault(kind, set()).add(_as_id(method, constraint))
            return original(self, constraint, *args, **kwargs)

        return record

    with monkeypatch.context() as patch:
        for method, kind in KINDS.items():
            patch.setattr(AsyncApp, method, recording(method, kind))
        slack.build_app(world.bot, world.config, BotIdentity(TEAM_ID, BOT_USER_ID, BOT_ID))
    return found


def _commands(manifest: dict[str, Any]) -> set[str]:
    return {command["command"] for command in manifest["features"].get("slash_commands", [])}


def _events(manifest: dict[str, Any]) -> set[str]:
    return set(manifest["settings"].get("event_subscriptions", {}).get("bot_events", []))


def test_the_manifests_declare_exactly_what_the_app_registers(world: SlackWorld,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    found = registered(world, monkeypatch)
    interactive = bool(set(Action) or set(ViewCallback))
    assert found["command"] == {commands.COMMAND}
    assert found["action"] | found["options"] == set(Action), "actions registered vs bot/ids.py Action"
    assert found["options"] == set(OPTIONS_ACTIONS), "options listeners vs bot/ids.py OPTIONS_ACTIONS"
    assert found["view"] == set(ViewCallback), "view listeners vs bot/ids.py ViewCallback"
    assert found["shortcut"] == set(), "shortcuts would need features.shortcuts in the manifests"
    for name, path in MANIFESTS.items():
        manifest = _load(path)
        assert _commands(manifest) == found["command"], name
        assert _events(manifest) == found["event"], name
        assert manifest["settings"]["interactivity"]["is_enabled"] is interactive, name


def test_dev_is_socket_mode_without_urls_and_prod_points_everything_at_slack_events() -> None:
    dev, prod = _load(MANIFESTS["dev"]), _load(MANIFESTS["prod"])
    assert dev["settings"]["socket_mode_enabled"] is True and prod["settings"]["socket_mode_enabled"] is False
    assert "url" not in str(dev).replace("oauth", ""), "Socket Mode needs no request URL"
    assert [c["url"] for c in prod["features"]["slash_commands"]] == [PROD_URL]
    assert prod["settings"]["event_subscriptions"]["request_url"] == PROD_URL
    assert prod["settings"]["interactivity"]["request_url"] == PROD_URL
    assert (prod["settings"]["interactivity"].get("message_menu_options_url") == PROD_URL) is bool(OPTIONS_ACTIONS)
    assert prod["oauth_config"]["redirect_urls"] == ["https://croco.example.com/slack/oauth_redirect"]
    for manifest in (dev, prod):
        assert set(manifest["oauth_config"]["scopes"]["bot"]) == BOT_SCOPES
        assert manifest["features"]["app_home"]["home_tab_enabled"] is True
        assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
        assert manifest["features"]["slash_commands"][0]["usage_hint"] == \
            "connect | settings | status | why [date] | help"


# What the served app answers ------------------------------------------------------------------------------


async def test_every_action_id_is_answered(world: SlackWorld) -> None:
    statuses = {}
    for action in Action:
        if action in OPTIONS_ACTIONS:
            status, _ = await world.sender.options(action, "", user_id=ANN.id, view=_view("croco_test"))
        else:
            status, _ = await world.sender.action(action, "1", user_id=ANN.id)
        statuses[str(action)] = status
    await _listeners_finished()
    assert [action for action, status in statuses.items() if status == 404] == []


async def test_an_unknown_action_id_is_not_answered(world: SlackWorld) -> None:
    status, _ = await world.sender.action("no_such_action", "1", user_id=ANN.id)
    assert status == 404


async def test_every_view_callback_is_answered(world: SlackWorld) -> None:
    statuses = {str(callback): (await world.sender.submit(_view(callback), {}, user_id=ANN.id))[0]
                for callback in ViewCallback}
    await _listeners_finished()
    assert [callback for callback, status in statuses.items() if status == 404] == []


async def test_every_manifest_event_is_answered(world: SlackWorld) -> None:
    samples: dict[str, dict[str, Any]] = {
        "app_home_opened": {"type": "app_home_opened", "user": ANN.id, "channel": "D0ANN", "tab": "home",
                            "event_ts": "1614585600.000100"},
        "app_uninstalled": {"type": "app_uninstalled", "event_ts": "1614585600.000100"},
        "tokens_revoked": {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [BOT_USER_ID]},
                           "event_ts": "1614585600.000100"},
    }
    events = _events(_load(MANIFESTS["prod"]))
    assert events <= set(samples), "add a sample for each new event here"
    statuses = {name: (await world.sender.event(samples[name]))[0] for name in sorted(events)}
    await _listeners_finished()
    assert [name for name, status in statuses.items() if status == 404] == []


async def _listeners_finished() -> None:
    """Bolt runs a listener on after its ack: let those end inside the test, before the world's database goes."""
    running = [task for task in asyncio.all_tasks()
               if "run_ack_function_asynchronously" in getattr(task.get_coro(), "__qualname__", "")]
    await asyncio.wait_for(asyncio.gather(*running, return_exceptions=True), 30)


def _view(callback_id: str) -> dict[str, Any]:
    return {"id": "V0TEST", "type": "modal", "callback_id": callback_id, "private_metadata": "", "hash": "h0",
            "blocks": [], "title": {"type": "plain_text", "text": "Test"}}
