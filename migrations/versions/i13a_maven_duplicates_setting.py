"""per-project setting: may a Maven release be uploaded again (GitLab's default: yes)

Revision ID: i13a
Revises: 0006
Create Date: 2026-11-25 17:50:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'i13a'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('projects') as batch:
        batch.add_column(sa.Column('maven_duplicates_allowed', sa.Boolean(), nullable=False,
                                   server_default=sa.true()))


def downgrade():
    with op.batch_alter_table('projects') as batch:
        batch.drop_column('maven_duplicates_allowed')
