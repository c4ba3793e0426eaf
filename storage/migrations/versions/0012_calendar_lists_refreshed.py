"""connections: when the account's calendar list was last read (refreshed hourly and when settings open)

Revision ID: 0012
Revises: 0011
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('connection', sa.Column('calendars_listed_at', UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('connection') as batch:
        batch.drop_column('calendars_listed_at')
