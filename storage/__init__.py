"""Database layer: tables, sessions, repositories, migrations and secret encryption.

Nothing here speaks HTTP or knows about Slack; `sync/`, `web/` and `bot/` build on it.
"""
