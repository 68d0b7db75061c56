"""token kinds share one shape (scopes as text, expiry everywhere); the account lock

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-25 18:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0003'
branch_labels = None
depends_on = None

DEPLOY_SCOPES = ["read_repository", "read_registry", "write_registry",
                 "read_package_registry", "write_package_registry"]


def upgrade():
    with op.batch_alter_table('deploy_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scopes', sa.String(length=255), nullable=False,
                                      server_default=''))
    # The five flags become one comma-separated list, in the same order as before.
    tokens = sa.table('deploy_tokens', sa.column('id', sa.Integer), sa.column('scopes', sa.String),
                      *[sa.column(s, sa.Boolean) for s in DEPLOY_SCOPES])
    connection = op.get_bind()
    for row in connection.execute(sa.select(tokens)).mappings().all():
        names = ",".join(s for s in DEPLOY_SCOPES if row[s])
        connection.execute(tokens.update().where(tokens.c.id == row["id"]).values(scopes=names))
    with op.batch_alter_table('deploy_tokens', schema=None) as batch_op:
        for scope in DEPLOY_SCOPES:
            batch_op.drop_column(scope)

    with op.batch_alter_table('runner_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scopes', sa.String(length=255), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_attempts', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_attempts')

    with op.batch_alter_table('runner_tokens', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
        batch_op.drop_column('scopes')

    with op.batch_alter_table('deploy_tokens', schema=None) as batch_op:
        for scope in DEPLOY_SCOPES:
            batch_op.add_column(sa.Column(scope, sa.Boolean(), nullable=False,
                                          server_default=sa.false()))
    tokens = sa.table('deploy_tokens', sa.column('id', sa.Integer), sa.column('scopes', sa.String),
                      *[sa.column(s, sa.Boolean) for s in DEPLOY_SCOPES])
    connection = op.get_bind()
    for row in connection.execute(sa.select(tokens.c.id, tokens.c.scopes)).all():
        names = set((row.scopes or "").split(","))
        connection.execute(tokens.update().where(tokens.c.id == row.id)
                           .values(**{s: s in names for s in DEPLOY_SCOPES}))
    with op.batch_alter_table('deploy_tokens', schema=None) as batch_op:
        batch_op.drop_column('scopes')
