"""How appointments and contacts look to the outside (REST API responses and webhook bodies alike)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.models import Appointment, AppointmentAssignee, AppointmentContact, Contact


def rfc3339(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


async def appointment_payload(session: AsyncSession, appointment: Appointment) -> dict[str, Any]:
    assigned = await session.scalars(
        select(col(AppointmentAssignee.user_id)).where(col(AppointmentAssignee.appointment_id) == appointment.id)
    )
    contacts = await session.scalars(
        select(col(AppointmentContact.contact_id)).where(col(AppointmentContact.appointment_id) == appointment.id)
    )
    return {
        "id": appointment.id,
        "calendar_id": appointment.calendar_id,
        "start": rfc3339(appointment.start),
        "end": rfc3339(appointment.end),
        "title": appointment.title,
        "assigned_user_ids": sorted(assigned),
        "status": appointment.status,
        "origin": appointment.origin,
        "contact_ids": sorted(contacts),
    }


def contact_payload(contact: Contact) -> dict[str, Any]:
    return {"id": contact.id, "name": contact.name, "email": contact.email, "source": contact.source}
