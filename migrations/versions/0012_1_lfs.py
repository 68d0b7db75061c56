"""Git LFS: objects, the projects that hold them, and locks

Revision ID: i12_lfs
Revises: i13a
"""
from alembic import op
import sqlalchemy as sa

revision = 'i12_lfs'
down_revision = 'i13a'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('lfs_objects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('oid', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lfs_objects')),
    sa.UniqueConstraint('oid', name=op.f('uq_lfs_objects_oid'))
    )
    op.create_table('lfs_objects_projects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lfs_object_id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lfs_object_id'], ['lfs_objects.id'], name=op.f('fk_lfs_objects_projects_lfs_object_id_lfs_objects')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_lfs_objects_projects_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lfs_objects_projects')),
    sa.UniqueConstraint('lfs_object_id', 'project_id', name='uq_lfs_objects_projects_link')
    )
    with op.batch_alter_table('lfs_objects_projects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lfs_objects_projects_lfs_object_id'), ['lfs_object_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lfs_objects_projects_project_id'), ['project_id'], unique=False)

    op.create_table('lfs_locks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('ref', sa.String(length=1024), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_lfs_locks_project_id_projects')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_lfs_locks_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lfs_locks')),
    sa.UniqueConstraint('project_id', 'path', name='uq_lfs_locks_path')
    )
    with op.batch_alter_table('lfs_locks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lfs_locks_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lfs_locks_user_id'), ['user_id'], unique=False)


def downgrade():
    op.drop_table('lfs_locks')
    op.drop_table('lfs_objects_projects')
    op.drop_table('lfs_objects')
