"""free slots read each member's merged busy periods: the `busyperiod` table, filled from the blocked slots

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types
from storage.types import LastsAtLeast

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TWO_DAYS = 2 * 24 * 3600  # LONG_BUSY when this revision was written

# Gaps and islands: a busy slot starts a new period unless an earlier one (by start) reaches it. Ties in the
# numbering put the period's first slot first, whatever order equal rows come in.
BACKFILL = '''
INSERT INTO busyperiod (user_id, start, "end")
SELECT user_id, MIN(start), MAX("end") FROM (
    SELECT user_id, start, "end",
           SUM(fresh) OVER (PARTITION BY user_id ORDER BY start, "end", fresh DESC ROWS UNBOUNDED PRECEDING) AS island
    FROM (
        SELECT user_id, start, "end",
               CASE WHEN start <= MAX("end") OVER (PARTITION BY user_id ORDER BY start, "end"
                                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                    THEN 0 ELSE 1 END AS fresh
        FROM blockedslot WHERE busy
    ) AS flagged
) AS numbered
GROUP BY user_id, island
'''


def upgrade() -> None:
    op.create_table(
        'busyperiod',
        sa.Column('user_id', sa.String(length=32), nullable=False),
        sa.Column('start', storage.types.UTCDateTime(), nullable=False),
        sa.Column('end', storage.types.UTCDateTime(), nullable=False),
        sa.Column('long', sa.Boolean(), sa.Computed(LastsAtLeast(TWO_DAYS)), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['user.id']),
        sa.PrimaryKeyConstraint('user_id', 'start'),
    )
    op.create_index('ix_busyperiod_user_long_end', 'busyperiod', ['user_id', 'long', 'end'])
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_index('ix_busyperiod_user_long_end', table_name='busyperiod')
    op.drop_table('busyperiod')
