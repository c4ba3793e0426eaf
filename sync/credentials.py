"""A connection's credentials at rest: the providers' typed credentials as tagged JSON in a `SecretBox`.

The tag (`kind`) says which type a document is, so a new kind of credentials never has to be guessed from
its fields. Rows written before the tag existed hold `{"username", "password"}` and read as an app password.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Connection
from storage.secrets import SecretBox, UndecryptableSecret
from sync.providers.base import AppPassword, CalendarProvider, Credentials, OAuthTokens, TokenCache

APP_PASSWORD, OAUTH, MSAL_CACHE = "app_password", "oauth", "msal_cache"


def seal(box: SecretBox, credentials: Credentials) -> bytes:
    match credentials:
        case AppPassword(username, password):
            return box.seal({"kind": APP_PASSWORD, "username": username, "password": password})
        case OAuthTokens(access_token, refresh_token, expires_at, scope):
            return box.seal({"kind": OAUTH, "access_token": access_token, "refresh_token": refresh_token,
                             "expires_at": expires_at.isoformat(), "scope": list(scope)})
        case TokenCache(serialized, home_account_id):
            return box.seal({"kind": MSAL_CACHE, "cache": serialized, "home_account_id": home_account_id})


def unseal(box: SecretBox, token: bytes) -> Credentials:
    document = box.open(token)
    try:
        return _credentials(document)
    except (KeyError, TypeError, ValueError):
        raise UndecryptableSecret("stored credentials are of no known kind") from None


def _credentials(document: dict[str, Any]) -> Credentials:
    kind = document.get("kind", APP_PASSWORD)
    if kind == APP_PASSWORD:
        return AppPassword(str(document["username"]), str(document["password"]))
    if kind == OAUTH:
        return OAuthTokens(str(document["access_token"]), str(document["refresh_token"]),
                           datetime.fromisoformat(document["expires_at"]), tuple(map(str, document["scope"])))
    if kind == MSAL_CACHE:
        return TokenCache(str(document["cache"]), str(document["home_account_id"]))
    raise ValueError(kind)


async def keep_rotated(session: AsyncSession, box: SecretBox, connection_id: str, provider: CalendarProvider) -> None:
    """Store the tokens a refresh replaced, encrypted, in the caller's transaction: a replaced refresh token may
    be the only one left (Graph), and a rollback keeps the tokens the row had, never a half-written state."""
    rotated = provider.rotated_credentials()
    if rotated is not None:
        connection = await session.get(Connection, connection_id)
        if connection is not None:
            connection.credentials = seal(box, rotated)
