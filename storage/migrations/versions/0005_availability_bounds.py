"""availability reads only rows overlapping its window: a generated `long` flag and an index on it

Blocked slots and appointments lasting at least two days (storage.models.LONG_BUSY) are flagged by the
database; the others are found by a range of starts bounded on both sides.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import LastsAtLeast

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

TWO_DAYS = 2 * 24 * 3600  # LONG_BUSY when this revision was written


def upgrade() -> None:
    for table in ('blockedslot', 'appointment'):
        # SQLite adds it as a VIRTUAL column (computed on read, indexable), PostgreSQL as STORED.
        op.add_column(table, sa.Column('long', sa.Boolean(), sa.Computed(LastsAtLeast(TWO_DAYS)), nullable=False))
    op.create_index('ix_blockedslot_user_long_end', 'blockedslot', ['user_id', 'long', 'end'])
    op.create_index('ix_appointment_long_end', 'appointment', ['long', 'end'])


def downgrade() -> None:
    op.drop_index('ix_appointment_long_end', table_name='appointment')
    op.drop_index('ix_blockedslot_user_long_end', table_name='blockedslot')
    for table in ('appointment', 'blockedslot'):
        op.drop_column(table, 'long')
