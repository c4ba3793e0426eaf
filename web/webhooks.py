"""The aiohttp client behind automation webhooks (`sync.firing.WebhookSender`)."""

from __future__ import annotations

import aiohttp


class AiohttpWebhookSender:
    def __init__(self, session: aiohttp.ClientSession, *, timeout_seconds: float = 10.0) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            async with self._session.post(url, data=body, headers=headers, timeout=self._timeout,
                                          allow_redirects=False) as response:
                return response.status
        except aiohttp.ClientError as exc:  # refused, reset, bad URL: all mean "try again later"
            raise OSError(f"webhook host unreachable: {type(exc).__name__}") from exc
