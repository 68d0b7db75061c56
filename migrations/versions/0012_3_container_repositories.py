"""Container repositories: stable ids for the registry API

Revision ID: i12_registry
Revises: i12_paths
"""
from alembic import op
import sqlalchemy as sa

revision = 'i12_registry'
down_revision = 'i12_paths'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('container_repositories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_container_repositories_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_container_repositories')),
    sa.UniqueConstraint('name', name=op.f('uq_container_repositories_name'))
    )
    with op.batch_alter_table('container_repositories', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_container_repositories_project_id'), ['project_id'], unique=False)


def downgrade():
    op.drop_table('container_repositories')
