"""workspaces: the default one is flagged (a Slack team may take it); sync settings: the daily agenda opt-in

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# Until now the default workspace was the oldest one not bound to a Slack team.
FLAG_DEFAULT = '''
UPDATE workspace SET is_default = TRUE WHERE id = (
    SELECT id FROM workspace WHERE slack_team_id IS NULL ORDER BY created_at, id LIMIT 1
)
'''


def upgrade() -> None:
    # Plain ADD COLUMN: SQLite's batch mode would copy `workspace`, which every user row references.
    op.add_column('workspace', sa.Column('is_default', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(FLAG_DEFAULT)
    op.add_column('syncsettings', sa.Column('daily_agenda', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('syncsettings') as batch:
        batch.drop_column('daily_agenda')
    with op.batch_alter_table('workspace') as batch:
        batch.drop_column('is_default')
