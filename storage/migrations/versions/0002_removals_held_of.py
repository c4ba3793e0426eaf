"""the mass-deletion hold remembers how many items were known when it started

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('remotecalendar') as batch:
        batch.add_column(sa.Column('removals_held_of', sa.Integer(), nullable=True))
        batch.drop_column('needs_confirmation')


def downgrade() -> None:
    with op.batch_alter_table('remotecalendar') as batch:
        batch.add_column(sa.Column('needs_confirmation', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.drop_column('removals_held_of')
