"""routes: one table of group and project paths, unique ignoring case across both

Revision ID: 0010
Revises: 0009

Groups and projects were each unique only within their own table; the service checked
the other table before inserting, which two concurrent creates can both pass. Every
existing path gets its route. A path that is both a group and a project already must be
renamed by an operator first: the migration lists such paths and changes nothing.
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def shared_paths(connection) -> list[str]:
    """Paths (lower case) that are both a group's and a project's."""
    return connection.execute(sa.text(
        "SELECT lower(full_path) FROM groups INTERSECT SELECT lower(full_path) FROM projects "
        "ORDER BY 1")).scalars().all()


def upgrade():
    shared = shared_paths(op.get_bind())
    if shared:
        raise RuntimeError(
            "Cannot give every group and project its own path: these are both a group and a "
            "project:\n  " + "\n  ".join(shared) + "\nRename the project or the group (the "
            "database row and, for a project, DATA_DIR/repositories/<path>.git), then run "
            "the migration again.")
    op.create_table(
        'routes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('path', sa.String(length=1024), nullable=False),
        sa.Column('group_id', sa.Integer(), nullable=True),
        sa.Column('project_id', sa.Integer(), nullable=True),
        sa.CheckConstraint('(group_id IS NULL) <> (project_id IS NULL)',
                           name=op.f('ck_routes_one_source')),
        sa.ForeignKeyConstraint(['group_id'], ['groups.id'], name=op.f('fk_routes_group_id_groups')),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'],
                                name=op.f('fk_routes_project_id_projects')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_routes')),
        sa.UniqueConstraint('group_id', name=op.f('uq_routes_group_id')),
        sa.UniqueConstraint('project_id', name=op.f('uq_routes_project_id')),
    )
    op.execute("INSERT INTO routes (path, group_id) SELECT full_path, id FROM groups")
    op.execute("INSERT INTO routes (path, project_id) SELECT full_path, id FROM projects")
    op.create_index('uq_routes_path_lower', 'routes', [sa.text('lower(path)')], unique=True)


def downgrade():
    op.drop_index('uq_routes_path_lower', table_name='routes')
    op.drop_table('routes')
