"""expiry warnings sent: one row per token and threshold

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 18:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'expiry_notifications',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_kind', sa.String(length=64), nullable=False),
        sa.Column('token_id', sa.Integer(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('threshold_days', sa.Integer(), nullable=False),
        sa.Column('recipients', sa.Integer(), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_expiry_notifications')),
        sa.UniqueConstraint('token_kind', 'token_id', 'expires_at', 'threshold_days',
                            name='uq_expiry_notifications_token_threshold'),
    )


def downgrade():
    op.drop_table('expiry_notifications')
