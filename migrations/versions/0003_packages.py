"""package registry: packages, their files and npm dist-tags

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 00:39:28.162779

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('packages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('package_type', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('version', sa.String(length=255), nullable=False),
    sa.Column('metadata_json', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_packages_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_packages')),
    sa.UniqueConstraint('project_id', 'package_type', 'name', 'version', name='uq_packages_identity')
    )
    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_packages_project_id'), ['project_id'], unique=False)

    op.create_table('package_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('file_md5', sa.String(length=32), nullable=True),
    sa.Column('file_sha1', sa.String(length=40), nullable=True),
    sa.Column('file_sha512', sa.String(length=128), nullable=True),
    sa.Column('requires_python', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], name=op.f('fk_package_files_package_id_packages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_package_files'))
    )
    with op.batch_alter_table('package_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_package_files_file_sha256'), ['file_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_package_files_package_id'), ['package_id'], unique=False)

    op.create_table('package_tags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('package_type', sa.String(length=16), nullable=False),
    sa.Column('package_name', sa.String(length=255), nullable=False),
    sa.Column('tag', sa.String(length=255), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], name=op.f('fk_package_tags_package_id_packages')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_package_tags_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_package_tags')),
    sa.UniqueConstraint('project_id', 'package_type', 'package_name', 'tag', name='uq_package_tags_identity')
    )
    with op.batch_alter_table('package_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_package_tags_package_id'), ['package_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_package_tags_project_id'), ['project_id'], unique=False)



def downgrade():
    with op.batch_alter_table('package_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_package_tags_project_id'))
        batch_op.drop_index(batch_op.f('ix_package_tags_package_id'))

    op.drop_table('package_tags')
    with op.batch_alter_table('package_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_package_files_package_id'))
        batch_op.drop_index(batch_op.f('ix_package_files_file_sha256'))

    op.drop_table('package_files')
    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_packages_project_id'))

    op.drop_table('packages')
