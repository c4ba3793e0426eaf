"""Slack as the outbox's sink (`sync.outbox.NoticeSink`): each notice is a DM to its user.

Exactly once: every DM carries the notice id in its message `metadata`. A retry (attempt > 1) first reads the
DM's recent history for that id: a post that succeeded while its mark-delivered was lost is found there and
counts as delivered, not posted again. A 429 is waited out by the client (`Retry-After`); one still limited, a
5xx or a network error is `DeliveryFailed` (the outbox backs off); a user Slack cannot reach is `Undeliverable`
(the notice stays listed in `GET /users/{id}/notices`)."""

from __future__ import annotations

import logging
from datetime import timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.notices import build
from bot.config import SlackConfig
from bot.tokens import BotTokens
from sync.outbox import DeliveryFailed, OutgoingNotice, Undeliverable

log = logging.getLogger(__name__)

EVENT_TYPE = "croco_notice"
HISTORY_LIMIT = 100
HISTORY_MARGIN = timedelta(minutes=5)
"""History is read from a little before the notice was written: no DM about it can be older."""
UNREACHABLE = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "no_permission",
    "missing_scope", "user_not_found", "user_disabled", "cannot_dm_bot", "not_allowed_token_type",
    "team_access_not_granted",
})
"""Errors no retry fixes: the token is gone or the user cannot be messaged."""


class SlackNoticeSink:
    def __init__(self, tokens: BotTokens, config: SlackConfig) -> None:
        self.tokens, self.config = tokens, config
        self._clients: dict[str, AsyncWebClient] = {}

    async def deliver(self, notice: OutgoingNotice) -> None:
        extra = {"notice_id": notice.id, "user_id": notice.user_id, "team_id": notice.slack_team_id,
                 "attempt": notice.attempt}
        if not notice.slack_user_id:
            raise Undeliverable("the user has no Slack id")
        token = await self.tokens.for_team(notice.slack_team_id)
        if token is None:
            raise Undeliverable(f"no bot token for Slack team {notice.slack_team_id}")
        client = self._client(token)
        try:
            opened = await client.conversations_open(users=notice.slack_user_id)
            channel = str(opened["channel"]["id"])
            if notice.attempt > 1 and await self._posted(client, channel, notice):
                log.info("notice found already posted", extra=extra)
                return
            text, blocks = build(notice.kind, notice.payload, notice.timezone)
            await client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False,
                metadata={"event_type": EVENT_TYPE, "event_payload": {"notice_id": notice.id}},
            )
        except SlackApiError as exc:
            raise _failure(exc) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise DeliveryFailed(f"Slack unreachable: {type(exc).__name__}") from None

    async def _posted(self, client: AsyncWebClient, channel: str, notice: OutgoingNotice) -> bool:
        """Whether a DM of this notice is among the channel's recent messages."""
        oldest = (notice.created_at - HISTORY_MARGIN).timestamp()
        try:
            history = await client.conversations_history(channel=channel, limit=HISTORY_LIMIT, oldest=str(oldest),
                                                         include_all_metadata=True)
        except SlackApiError as exc:
            if exc.response.get("error") != "missing_scope":
                raise
            log.warning("no im:history scope: a retried DM may repeat", extra={"notice_id": notice.id})
            return False
        for message in history.get("messages") or []:
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == EVENT_TYPE and \
                    (metadata.get("event_payload") or {}).get("notice_id") == notice.id:
                return True
        return False

    def _client(self, token: str) -> AsyncWebClient:
        if token not in self._clients:
            self._clients[token] = self.config.client(token)
        return self._clients[token]


def _failure(exc: SlackApiError) -> DeliveryFailed | Undeliverable:
    """A Slack error as the outbox sees it; the reason names the error, never the token."""
    status = getattr(exc.response, "status_code", 200)
    error = str(exc.response.get("error") or f"HTTP {status}")
    if status == 429 or error == "ratelimited":
        header = (exc.response.headers or {}).get("Retry-After") or (exc.response.headers or {}).get("retry-after")
        return DeliveryFailed("Slack rate limit", retry_after=_seconds(header))
    if status >= 500:
        return DeliveryFailed(f"Slack HTTP {status}")
    if error in UNREACHABLE:
        return Undeliverable(f"Slack: {error}")
    return DeliveryFailed(f"Slack: {error}")


def _seconds(header: object) -> float:
    value = header[0] if isinstance(header, list) and header else header
    try:
        return max(float(str(value)), 1.0)
    except ValueError:
        return 1.0
