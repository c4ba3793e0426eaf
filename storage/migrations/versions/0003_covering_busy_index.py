"""blocked slots: the (user, time) index covers the availability query

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_blockedslot_user_time', table_name='blockedslot')
    op.create_index('ix_blockedslot_user_time', 'blockedslot', ['user_id', 'start', 'end', 'busy', 'id'])


def downgrade() -> None:
    op.drop_index('ix_blockedslot_user_time', table_name='blockedslot')
    op.create_index('ix_blockedslot_user_time', 'blockedslot', ['user_id', 'start', 'end'])
