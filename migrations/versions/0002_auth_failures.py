"""failed-authentication counters for the IP ban

Revision ID: 0002
Revises: 0004
Create Date: 2026-11-25 00:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('auth_failures',
    sa.Column('ip', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('banned_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('ip', name=op.f('pk_auth_failures'))
    )
    with op.batch_alter_table('auth_failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_failures_banned_until'), ['banned_until'], unique=False)


def downgrade():
    with op.batch_alter_table('auth_failures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_failures_banned_until'))

    op.drop_table('auth_failures')
