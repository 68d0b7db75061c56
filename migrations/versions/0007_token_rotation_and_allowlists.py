"""token rotation (the previous secret during a grace period) and address allowlists

Revision ID: 0007
Revises: 0006_browser_sessions
Create Date: 2026-11-25 18:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006_browser_sessions'
branch_labels = None
depends_on = None

TABLES = ('deploy_tokens', 'personal_access_tokens', 'runner_tokens')


def upgrade():
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('previous_token_digest', sa.String(length=64),
                                          nullable=True))
            batch_op.add_column(sa.Column('previous_expires_at', sa.DateTime(timezone=True),
                                          nullable=True))
            batch_op.add_column(sa.Column('allowed_ips', sa.Text(), nullable=True))
            batch_op.create_unique_constraint(
                batch_op.f(f'uq_{table}_previous_token_digest'), ['previous_token_digest'])


def downgrade():
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'uq_{table}_previous_token_digest'),
                                     type_='unique')
            batch_op.drop_column('allowed_ips')
            batch_op.drop_column('previous_expires_at')
            batch_op.drop_column('previous_token_digest')
