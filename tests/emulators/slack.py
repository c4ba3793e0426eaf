"""A Slack Web API emulator and a sender that signs requests as Slack does (research/slack.md sections 4 and 7).

`SlackEmulator` is an aiohttp server answering `POST|GET /api/{method}` like slack.com/api: form, JSON and query
string arguments, `Authorization: Bearer` tokens, `{"ok": false, "error": ...}` for a bad token, and on demand an
HTTP 429 with `Retry-After`, a 5xx, or a slow answer. The real `AsyncWebClient` reaches it through
`CROCO_SLACK_API_URL` (`emulator.api_url`) only. Every call is recorded; tests wait on calls, never sleep.

Socket Mode: `apps.connections.open` (app-level token only) hands out a `ws://` URL on the emulator; a client
connecting there gets `hello`, and `send_envelope` pushes an envelope as Slack would and waits for its ack.

`SlackSender` is Slack's side of the request URL: slash commands, interactivity payloads, options loads and
Events API callbacks, signed with the app's signing secret (`v0:{timestamp}:{body}`, HMAC-SHA256).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

TEAM_ID, TEAM_NAME, BOT_USER_ID, BOT_ID = "T0CROCO", "Croco Test Team", "U0CROCOBOT", "B0CROCO"
BOT_TOKEN = "xoxb-croco-test"
APP_TOKEN = "xapp-croco-test"
SIGNING_SECRET = "croco-test-signing-secret"
CLIENT_ID, CLIENT_SECRET = "1111.2222", "croco-test-client-secret"


@dataclass(frozen=True)
class Team:
    """Another workspace, which installs the app through OAuth and gets its own bot token."""

    id: str
    name: str
    token: str
    bot_user_id: str = "U0OTHERBOT"
    bot_id: str = "B0OTHER"


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]
    token: str | None


@dataclass
class Member:
    """A workspace member as `users.info` returns them (with `users:read.email`)."""

    id: str
    name: str
    email: str | None = None
    tz: str = "Europe/Paris"
    team_id: str = TEAM_ID

    def as_json(self) -> dict[str, Any]:
        profile: dict[str, Any] = {"real_name": self.name, "display_name": self.name.split()[0]}
        if self.email is not None:
            profile["email"] = self.email
        return {"id": self.id, "team_id": self.team_id, "name": self.name.lower().replace(" ", "."),
                "real_name": self.name, "tz": self.tz, "tz_offset": 0, "is_bot": False, "deleted": False,
                "profile": profile}


@dataclass
class Failure:
    status: int
    retry_after: int | None = None


@dataclass
class SlackEmulator:
    tokens: set[str] = field(default_factory=lambda: {BOT_TOKEN})
    members: dict[str, Member] = field(default_factory=dict)
    delay_seconds: float = 0.0
    """Every call answers after this long (an overloaded Slack)."""
    calls: list[Call] = field(default_factory=list)
    """The calls answered `ok`; `attempts` holds every call, failed ones included."""
    attempts: list[Call] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    """What chat.postMessage posted (and chat.update changed), in order, with channel, ts and metadata."""
    responses: list[dict[str, Any]] = field(default_factory=list)
    """What listeners sent to a payload's `response_url`."""
    teams: dict[str, Team] = field(default_factory=dict)
    """Installed teams by bot token: auth.test answers the token's own team."""
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    _grants: dict[str, tuple[Team, str]] = field(default_factory=dict)
    _failures: dict[str, list[Failure]] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _views: dict[str, dict[str, Any]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    base_url: str = ""
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    """Open Socket Mode connections, newest last."""
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Socket Mode acks by envelope id, as the client sent them (`envelope_id`, optional `payload`)."""

    # Test controls -------------------------------------------------------------------------------------

    def add_member(self, member: Member) -> Member:
        self.members[member.id] = member
        return member

    def grant(self, team: Team, *, installer: str) -> str:
        """Someone in `team` approved the install: the one-time code Slack puts on the redirect."""
        code = f"code-{team.id}-{next(self._ids)}"
        self._grants[code] = (team, installer)
        return code

    def revoke(self, team: Team) -> None:
        """The app was uninstalled from `team`: its bot token stops working."""
        self.tokens.discard(team.token)
        self.teams.pop(team.token, None)

    def fail(self, method: str, *failures: Failure) -> None:
        """The next calls to `method` answer with these failures, one each, then normally again."""
        self._failures.setdefault(method, []).extend(failures)

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def wait_for(self, method: str, count: int = 1, *, timeout: float = 10.0,
                       where: Callable[[Call], bool] = lambda call: True) -> list[Call]:
        """Wait until `count` successful calls to `method` matching `where` have been answered."""
        def matching() -> list[Call]:
            return [call for call in self.calls_to(method) if where(call)]

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(matching()) >= count), timeout)
        return matching()

    async def send_envelope(self, payload_type: str, payload: dict[str, Any], *,
                            timeout: float = 10.0) -> dict[str, Any]:
        """Push a Socket Mode envelope (`slash_commands`, `interactive` or `events_api`) down the newest
        connection, waiting for one if the client is still connecting, and return the client's ack for it."""
        envelope_id = f"env-{next(self._ids)}"
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: any(not s.closed for s in self.sockets)), timeout)
        socket = [s for s in self.sockets if not s.closed][-1]
        await socket.send_json({"envelope_id": envelope_id, "type": payload_type, "payload": payload,
                                "accepts_response_payload": payload_type != "events_api", "retry_attempt": 0,
                                "retry_reason": ""})
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: envelope_id in self.acks), timeout)
        return self.acks[envelope_id]

    async def wait_for_responses(self, count: int = 1, *, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until listeners have sent `count` messages to `response_url`s."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.responses) >= count), timeout)
        return self.responses

    def view(self, view_id: str) -> dict[str, Any]:
        return self._views[view_id]

    @property
    def api_url(self) -> str:
        """The value of CROCO_SLACK_API_URL: slack_sdk joins it with the method name."""
        return f"{self.base_url}/api/"

    # Server ------------------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{id}", self._response_url)
        app.router.add_get("/link/", self._socket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)  # slow calls are not awaited
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        for socket in list(self.sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                args |= await request.json()
            else:
                args |= dict(parse_qsl(await request.text()))
        for key in ("view", "blocks", "metadata", "attachments"):  # form posts carry these as JSON text
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        return args

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Basic "):  # oauth.v2.access: the app's client id and secret
            client_id, _, client_secret = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
            args |= {"client_id": client_id, "client_secret": client_secret}
            authorization = ""
        token = authorization.removeprefix("Bearer ").strip() or args.get("token")
        self.attempts.append(Call(method, args, token))
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)  # the emulated latency itself, not a wait in a test
        pending = self._failures.get(method)
        if pending:
            failure = pending.pop(0)
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            body = {"ok": False, "error": "ratelimited"} if failure.status == 429 else {"ok": False}
            return web.json_response(body, status=failure.status, headers=headers)
        if method == "apps.connections.open":  # the one method on an app-level token, and only on one
            if token != APP_TOKEN:
                error = "not_allowed_token_type" if token in self.tokens else "invalid_auth"
                return web.json_response({"ok": False, "error": error})
        elif method not in ("oauth.v2.access", "api.test") and token not in self.tokens:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            answer = {"ok": False, "error": "unknown_method"}
        else:
            answer = handler(args, token) if method == "auth.test" else handler(args)  # auth.test: whose token
        if answer.get("ok"):
            async with self._changed:
                self.calls.append(Call(method, args, token))
                self._changed.notify_all()
        return web.json_response(answer)

    async def _response_url(self, request: web.Request) -> web.Response:
        async with self._changed:
            self.responses.append(await request.json())
            self._changed.notify_all()
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """A Socket Mode connection: `hello` first, then every text frame is an ack (`{"envelope_id": ...}`)."""
        socket = web.WebSocketResponse()  # answers the client's pings itself
        await socket.prepare(request)
        async with self._changed:
            self.sockets.append(socket)
            self._changed.notify_all()
        await socket.send_json({"type": "hello", "num_connections": len(self.sockets),
                                "debug_info": {"host": "emulator", "approximate_connection_time": 3600},
                                "connection_info": {"app_id": "A0CROCO"}})
        async for message in socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                ack = json.loads(message.data)
                async with self._changed:
                    self.acks[str(ack.get("envelope_id"))] = ack
                    self._changed.notify_all()
        return socket

    # Methods -----------------------------------------------------------------------------------------

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        ws_base = self.base_url.replace("http://", "ws://", 1)
        return {"ok": True, "url": f"{ws_base}/link/?ticket=t{next(self._ids)}&app_id=A0CROCO"}

    def _auth_test(self, args: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        team = self.teams.get(str(token))
        if team is not None:
            return {"ok": True, "url": f"https://{team.id.lower()}.slack.com/", "team": team.name, "team_id": team.id,
                    "user": "croco", "user_id": team.bot_user_id, "bot_id": team.bot_id,
                    "is_enterprise_install": False}
        return {"ok": True, "url": "https://croco-test.slack.com/", "team": TEAM_NAME, "team_id": TEAM_ID,
                "user": "croco", "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}

    def _oauth_v2_access(self, args: dict[str, Any]) -> dict[str, Any]:
        if (args.get("client_id"), args.get("client_secret")) != (self.client_id, self.client_secret):
            return {"ok": False, "error": "invalid_client_id"}
        granted = self._grants.pop(str(args.get("code")), None)  # a code works once
        if granted is None:
            return {"ok": False, "error": "invalid_code"}
        team, installer = granted
        self.tokens.add(team.token)
        self.teams[team.token] = team
        return {"ok": True, "app_id": "A0CROCO", "access_token": team.token, "token_type": "bot",
                "scope": "commands,chat:write,im:write,im:history,users:read,users:read.email",
                "bot_user_id": team.bot_user_id, "team": {"id": team.id, "name": team.name}, "enterprise": None,
                "is_enterprise_install": False, "authed_user": {"id": installer}}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        member = self.members.get(args.get("user", ""))
        return {"ok": True, "user": member.as_json()} if member else {"ok": False, "error": "user_not_found"}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = str(args.get("users", ""))
        return {"ok": True, "channel": {"id": "D" + users.removeprefix("U")}}

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        ts = f"{1_700_000_000 + next(self._ids)}.000100"
        channel = str(args["channel"])
        self.messages.append(args | {"ts": ts, "channel": channel})
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": args.get("text"), "ts": ts}}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        for message in self.messages:
            if message["ts"] == args.get("ts") and message["channel"] == args.get("channel"):
                message.update({k: v for k, v in args.items() if k in ("text", "blocks")})
                return {"ok": True, "channel": message["channel"], "ts": message["ts"]}
        return {"ok": False, "error": "message_not_found"}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        found = [m for m in reversed(self.messages) if m["channel"] == channel]
        return {"ok": True, "messages": [{"ts": m["ts"], "text": m.get("text"), "metadata": m.get("metadata")}
                                         for m in found[: int(args.get("limit", 100))]], "has_more": False}

    def _store_view(self, view: dict[str, Any], view_id: str | None = None) -> dict[str, Any]:
        view_id = view_id or f"V{next(self._ids):06d}"
        stored = view | {"id": view_id, "hash": f"h{next(self._ids)}"}
        self._views[view_id] = stored
        return {"ok": True, "view": stored}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        return self._store_view(args["view"])

    def _views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._views_open(args)

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = args.get("view_id")
        if view_id not in self._views:
            return {"ok": False, "error": "not_found"}
        if args.get("hash") and args["hash"] != self._views[view_id]["hash"]:
            return {"ok": False, "error": "hash_conflict"}
        return self._store_view(args["view"], view_id)

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._store_view(args["view"], f"home-{args.get('user_id')}")


@dataclass
class SlackSender:
    """Slack calling our request URL (`/slack/events`), with the signature Slack would put on it."""

    url: str
    response_base: str = ""
    """Where `response_url`s point (the emulator's `/response/`)."""
    signing_secret: str = SIGNING_SECRET
    team_id: str = TEAM_ID
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def signed_headers(self, body: str, *, timestamp: int | None = None, content_type: str) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        digest = hmac.new(self.signing_secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}", "Content-Type": content_type}

    async def post(self, body: str, content_type: str, *, headers: dict[str, str] | None = None,
                   timeout: float = 10.0) -> tuple[int, str]:
        """POST as Slack does; `headers` replace the signed ones (a forged or missing signature)."""
        sent = self.signed_headers(body, content_type=content_type) if headers is None else headers
        async with aiohttp.ClientSession() as http, http.post(
            self.url, data=body.encode(), headers=sent, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            return response.status, await response.text()

    def _user(self, user_id: str) -> dict[str, Any]:
        return {"id": user_id, "username": user_id.lower(), "team_id": self.team_id}

    def _response_url(self) -> str:
        return f"{self.response_base}/response/{next(self._ids)}"

    def command_body(self, text: str, *, user_id: str, command: str = "/croco") -> str:
        return urlencode({
            "token": "deprecated", "team_id": self.team_id, "team_domain": "croco-test", "channel_id": "D0CHANNEL",
            "channel_name": "directmessage", "user_id": user_id, "user_name": user_id.lower(), "command": command,
            "text": text, "api_app_id": "A0CROCO", "is_enterprise_install": "false",
            "response_url": self._response_url(), "trigger_id": f"{next(self._ids)}.trigger",
        })

    async def command(self, text: str, *, user_id: str) -> tuple[int, str]:
        return await self.post(self.command_body(text, user_id=user_id), "application/x-www-form-urlencoded")

    async def interaction(self, payload: dict[str, Any]) -> tuple[int, str]:
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded")

    async def action(self, action_id: str, value: str, *, user_id: str, block_id: str = "b",
                     container: dict[str, Any] | None = None, view: dict[str, Any] | None = None) -> tuple[int, str]:
        """A button click, in a message (`container` with channel and ts) or in a view."""
        payload: dict[str, Any] = {
            "type": "block_actions", "user": self._user(user_id), "api_app_id": "A0CROCO",
            "team": {"id": self.team_id, "domain": "croco-test"}, "trigger_id": f"{next(self._ids)}.trigger",
            "container": container or {"type": "view"},
            "actions": [{"type": "button", "action_id": action_id, "block_id": block_id, "value": value,
                         "action_ts": str(time.time())}],
        }
        if view is not None:
            payload["view"] = view
        if container and container.get("type") == "message":  # only messages have a response_url
            payload["response_url"] = self._response_url()
            payload["channel"] = {"id": container["channel_id"]}
            payload["message"] = {"ts": container["message_ts"]}
        return await self.interaction(payload)

    async def submit(self, view: dict[str, Any], values: dict[str, dict[str, Any]], *, user_id: str) -> tuple[int, str]:
        """A view submission: `values` as Slack sends them, `{block_id: {action_id: {...}}}`."""
        submitted = view | {"state": {"values": values}}
        return await self.interaction({
            "type": "view_submission", "user": self._user(user_id), "api_app_id": "A0CROCO",
            "team": {"id": self.team_id, "domain": "croco-test"}, "trigger_id": f"{next(self._ids)}.trigger",
            "view": submitted,
        })

    async def options(self, action_id: str, value: str, *, user_id: str, view: dict[str, Any],
                      block_id: str = "b") -> tuple[int, str]:
        """An external select asking for its options (`block_suggestion`)."""
        return await self.interaction({
            "type": "block_suggestion", "user": self._user(user_id), "api_app_id": "A0CROCO",
            "team": {"id": self.team_id, "domain": "croco-test"}, "action_id": action_id, "block_id": block_id,
            "value": value, "view": view,
        })

    async def event(self, event: dict[str, Any]) -> tuple[int, str]:
        body = json.dumps({
            "token": "deprecated", "team_id": self.team_id, "api_app_id": "A0CROCO", "type": "event_callback",
            "event": event, "event_id": f"Ev{next(self._ids):08d}", "event_time": int(time.time()),
            "authorizations": [{"team_id": self.team_id, "user_id": BOT_USER_ID, "is_bot": True}],
        })
        return await self.post(body, "application/json")
