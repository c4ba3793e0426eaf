"""outbox delivery: a notice is claimed with a lease, retried with backoff, and records its last error

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notice') as batch:
        batch.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('next_attempt_at', storage.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True))
        batch.add_column(sa.Column('failed_at', storage.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('lease_owner', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.add_column(sa.Column('lease_expires_at', storage.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('notice') as batch:
        for column in ('lease_expires_at', 'lease_owner', 'failed_at', 'last_error', 'next_attempt_at', 'attempts'):
            batch.drop_column(column)
