"""runner tokens and the recoverable CI deploy token

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-25 00:39:39.797758

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('runner_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('creator_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_ip', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['creator_id'], ['users.id'], name=op.f('fk_runner_tokens_creator_id_users')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_runner_tokens_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runner_tokens')),
    sa.UniqueConstraint('token_digest', name=op.f('uq_runner_tokens_token_digest'))
    )
    with op.batch_alter_table('runner_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runner_tokens_project_id'), ['project_id'], unique=False)

    # Ciphertext of the secret, kept only for a project token named gitlab-deploy-token.
    with op.batch_alter_table('deploy_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_encrypted', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('deploy_tokens', schema=None) as batch_op:
        batch_op.drop_column('token_encrypted')

    with op.batch_alter_table('runner_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runner_tokens_project_id'))

    op.drop_table('runner_tokens')
