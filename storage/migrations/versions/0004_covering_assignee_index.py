"""appointment assignees: the (user, appointment) index covers the availability query

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_appointmentassignee_user_id', table_name='appointmentassignee')
    op.create_index('ix_appointmentassignee_user_id', 'appointmentassignee', ['user_id', 'appointment_id'])


def downgrade() -> None:
    op.drop_index('ix_appointmentassignee_user_id', table_name='appointmentassignee')
    op.create_index('ix_appointmentassignee_user_id', 'appointmentassignee', ['user_id'])
