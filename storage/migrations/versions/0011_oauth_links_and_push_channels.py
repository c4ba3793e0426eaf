"""OAuth connect links keep their sealed PKCE verifier; push channels keep the resource id that stops them

Revision ID: 0011
Revises: 0010
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('connectlink', sa.Column('code_verifier', sa.LargeBinary(), nullable=True))
    op.add_column('remotecalendar', sa.Column('push_resource_id', sa.String(200), nullable=True))
    op.create_index('ix_remotecalendar_push_channel_id', 'remotecalendar', ['push_channel_id'])


def downgrade() -> None:
    op.drop_index('ix_remotecalendar_push_channel_id', 'remotecalendar')
    with op.batch_alter_table('remotecalendar') as batch:
        batch.drop_column('push_resource_id')
    with op.batch_alter_table('connectlink') as batch:
        batch.drop_column('code_verifier')
