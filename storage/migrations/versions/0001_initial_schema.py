"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 05:20:04.964543
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('workspace',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('slack_team_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('slack_team_id')
    )
    op.create_table('calendar',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('workspace_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('duration_minutes', sa.Integer(), nullable=False),
    sa.Column('slot_interval_minutes', sa.Integer(), nullable=False),
    sa.Column('timezone', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('open_hours', sa.JSON(), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=True),
    sa.Column('buffer_before_minutes', sa.Integer(), nullable=False),
    sa.Column('buffer_after_minutes', sa.Integer(), nullable=False),
    sa.Column('min_notice_minutes', sa.Integer(), nullable=False),
    sa.Column('max_days_ahead', sa.Integer(), nullable=False),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('calendar', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calendar_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('contact',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('workspace_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('workspace_id', 'email')
    )
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('user',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('workspace_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('slack_user_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('timezone', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('workspace_id', 'email')
    )
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_slack_user_id'), ['slack_user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_user_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('appointment',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('calendar_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('start', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('origin', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('busy', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['calendar_id'], ['calendar.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('appointment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_appointment_calendar_id'), ['calendar_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_appointment_start'), ['start'], unique=False)

    op.create_table('automation',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('workspace_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('calendar_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('trigger', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['calendar_id'], ['calendar.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspace.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('automation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_automation_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('calendarmember',
    sa.Column('calendar_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['calendar_id'], ['calendar.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('calendar_id', 'user_id')
    )
    op.create_table('connection',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('provider', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('account', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('server_url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('credentials', sa.LargeBinary(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_connection_user_id'), ['user_id'], unique=False)

    op.create_table('notice',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('dedupe_key', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    with op.batch_alter_table('notice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notice_delivered_at'), ['delivered_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_notice_user_id'), ['user_id'], unique=False)

    op.create_table('appointmentassignee',
    sa.Column('appointment_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('push_suppressed', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointment.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('appointment_id', 'user_id')
    )
    with op.batch_alter_table('appointmentassignee', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_appointmentassignee_user_id'), ['user_id'], unique=False)

    op.create_table('appointmentcontact',
    sa.Column('appointment_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('contact_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointment.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ),
    sa.PrimaryKeyConstraint('appointment_id', 'contact_id')
    )
    op.create_table('automationrun',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('automation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('appointment_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('contact_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('event_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('next_attempt_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointment.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['automation_id'], ['automation.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('automation_id', 'event_key')
    )
    with op.batch_alter_table('automationrun', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_automationrun_automation_id'), ['automation_id'], unique=False)

    op.create_table('remotecalendar',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('connection_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('remote_id', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('access', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sync_cursor', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=True),
    sa.Column('last_synced_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('last_full_sync_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('needs_confirmation', sa.Boolean(), nullable=False),
    sa.Column('removals_confirmed', sa.Boolean(), nullable=False),
    sa.Column('push_channel_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('push_channel_expires_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('due_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('lease_expires_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('connection_id', 'remote_id')
    )
    with op.batch_alter_table('remotecalendar', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_remotecalendar_connection_id'), ['connection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_remotecalendar_due_at'), ['due_at'], unique=False)

    op.create_table('blockedslot',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('remote_calendar_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('remote_id', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('start', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('busy', sa.Boolean(), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('all_day', sa.Boolean(), nullable=False),
    sa.Column('fetched_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['remote_calendar_id'], ['remotecalendar.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('blockedslot', schema=None) as batch_op:
        batch_op.create_index('ix_blockedslot_calendar_remote', ['remote_calendar_id', 'remote_id'], unique=False)
        batch_op.create_index('ix_blockedslot_user_time', ['user_id', 'start', 'end'], unique=False)

    op.create_table('conflictcalendar',
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('calendar_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.ForeignKeyConstraint(['calendar_id'], ['remotecalendar.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('user_id', 'calendar_id')
    )
    op.create_table('eventlink',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('appointment_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('remote_calendar_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('remote_id', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('occurrence_key', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('imported', sa.Boolean(), nullable=False),
    sa.Column('href', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('etag', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('content_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('last_seen_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointment.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['remote_calendar_id'], ['remotecalendar.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('appointment_id', 'user_id', 'remote_calendar_id')
    )
    with op.batch_alter_table('eventlink', schema=None) as batch_op:
        batch_op.create_index('ix_eventlink_calendar_remote', ['remote_calendar_id', 'remote_id'], unique=False)

    op.create_table('syncsettings',
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('linked_calendar_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('window_days_back', sa.Integer(), nullable=False),
    sa.Column('window_days_ahead', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['linked_calendar_id'], ['remotecalendar.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('user_id')
    )


def downgrade() -> None:
    op.drop_table('syncsettings')
    with op.batch_alter_table('eventlink', schema=None) as batch_op:
        batch_op.drop_index('ix_eventlink_calendar_remote')

    op.drop_table('eventlink')
    op.drop_table('conflictcalendar')
    with op.batch_alter_table('blockedslot', schema=None) as batch_op:
        batch_op.drop_index('ix_blockedslot_user_time')
        batch_op.drop_index('ix_blockedslot_calendar_remote')

    op.drop_table('blockedslot')
    with op.batch_alter_table('remotecalendar', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_remotecalendar_due_at'))
        batch_op.drop_index(batch_op.f('ix_remotecalendar_connection_id'))

    op.drop_table('remotecalendar')
    with op.batch_alter_table('automationrun', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_automationrun_automation_id'))

    op.drop_table('automationrun')
    op.drop_table('appointmentcontact')
    with op.batch_alter_table('appointmentassignee', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_appointmentassignee_user_id'))

    op.drop_table('appointmentassignee')
    with op.batch_alter_table('notice', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notice_user_id'))
        batch_op.drop_index(batch_op.f('ix_notice_delivered_at'))

    op.drop_table('notice')
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_connection_user_id'))

    op.drop_table('connection')
    op.drop_table('calendarmember')
    with op.batch_alter_table('automation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_automation_workspace_id'))

    op.drop_table('automation')
    with op.batch_alter_table('appointment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_appointment_start'))
        batch_op.drop_index(batch_op.f('ix_appointment_calendar_id'))

    op.drop_table('appointment')
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_workspace_id'))
        batch_op.drop_index(batch_op.f('ix_user_slack_user_id'))

    op.drop_table('user')
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_workspace_id'))

    op.drop_table('contact')
    with op.batch_alter_table('calendar', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calendar_workspace_id'))

    op.drop_table('calendar')
    op.drop_table('workspace')
