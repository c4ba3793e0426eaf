"""Contacts of a workspace: the people appointments are booked with or imported from two-way calendars."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from storage.db import Database
from storage.models import Contact


async def list_contacts(db: Database, workspace_id: str, email: str | None) -> list[Contact]:
    """Oldest first; `email` matches exactly, ignoring case (contacts are stored lowercased)."""
    query = select(Contact).where(col(Contact.workspace_id) == workspace_id)
    if email:
        query = query.where(col(Contact.email) == email.strip().lower())
    async with db.session() as session:
        return list(await session.scalars(query.order_by(col(Contact.created_at), col(Contact.id))))
