"""Re-encrypting every sealed value with the newest key, the step between adding a key and dropping the old one
(`croco rotate-secrets`; the README's run book): connection credentials, connect links' PKCE verifiers and the
Slack installations' tokens. A value no configured key opens is left as it is and counted."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Table, select, update

from storage.db import Database
from storage.models import Connection, ConnectLink
from storage.secrets import SecretBox, UndecryptableSecret
from storage.slack_tables import slack_bots, slack_installations


def _table(model: type) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


SEALED: tuple[tuple[Table, tuple[str, ...]], ...] = (
    (_table(Connection), ("credentials",)),
    (_table(ConnectLink), ("code_verifier",)),
    (slack_installations, ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token")),
    (slack_bots, ("bot_token", "bot_refresh_token")),
)
"""Every column holding sealed values: bytes in our tables, ASCII text in the Slack store's."""


@dataclass
class Resealed:
    rotated: int = 0
    unreadable: dict[str, int] = field(default_factory=dict)  # by table.column: sealed with a key no longer set


async def reseal_all(db: Database, box: SecretBox) -> Resealed:
    """One transaction per table, so a crash leaves each table wholly old or new (both open while both keys
    are configured)."""
    outcome = Resealed()
    for table, names in SEALED:
        key = table.primary_key.columns.values()[0]
        columns = [table.c[name] for name in names]
        async with db.write() as session:
            rows = (await session.execute(select(key, *columns))).all()
            for row in rows:
                values = {name: _rotated(box, row[index + 1], f"{table.name}.{name}", outcome)
                          for index, name in enumerate(names) if row[index + 1] is not None}
                changed = {name: value for name, value in values.items() if value is not None}
                if changed:
                    await session.execute(update(table).where(key == row[0]).values(**changed))
                    outcome.rotated += len(changed)
    return outcome


def _rotated(box: SecretBox, value: object, where: str, outcome: Resealed) -> bytes | str | None:
    token = value if isinstance(value, bytes) else str(value).encode("ascii")
    try:
        rotated = box.rotate(token)
    except UndecryptableSecret:
        outcome.unreadable[where] = outcome.unreadable.get(where, 0) + 1
        return None
    return rotated if isinstance(value, bytes) else rotated.decode("ascii")


