"""notices: one index of their delivery state (delivered, failed, created) replaces the one of delivered_at

The outbox gauges of `/metrics` count the notices neither delivered nor failed and take the oldest one's age
from this index alone; the one of delivered_at sent them to the table for every waiting and failed notice
(bench/metrics.py). Its first column serves the queries that used the old index (the deliverer's claim).

Revision ID: 0013
Revises: 0012
"""
from __future__ import annotations

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_notice_delivery', 'notice', ['delivered_at', 'failed_at', 'created_at'])
    op.drop_index('ix_notice_delivered_at', table_name='notice')


def downgrade() -> None:
    op.create_index('ix_notice_delivered_at', 'notice', ['delivered_at'])
    op.drop_index('ix_notice_delivery', table_name='notice')
