"""Group and project paths unique ignoring case

Revision ID: i12_paths
Revises: i12_lfs

Registry names are lower case, so `Zeta/app` and `zeta/app` would share one image
namespace; GitLab refuses such paths. Existing rows that collide must be renamed by
an operator first: the migration lists them and changes nothing.
"""
from alembic import op
import sqlalchemy as sa

revision = 'i12_paths'
down_revision = 'i12_lfs'
branch_labels = None
depends_on = None

TABLES = ("groups", "projects")


def collisions(connection) -> dict[str, list[list[str]]]:
    """Per table, the sets of full paths that differ only in case."""
    found = {}
    for table in TABLES:
        rows = connection.execute(sa.text(
            f"SELECT full_path FROM {table} WHERE lower(full_path) IN ("
            f"SELECT lower(full_path) FROM {table} GROUP BY lower(full_path) HAVING count(*) > 1)"
            " ORDER BY lower(full_path), full_path")).scalars().all()
        clusters: dict[str, list[str]] = {}
        for path in rows:
            clusters.setdefault(path.lower(), []).append(path)
        if clusters:
            found[table] = list(clusters.values())
    return found


def upgrade():
    found = collisions(op.get_bind())
    if found:
        lines = [f"  {table}: " + "; ".join(", ".join(c) for c in clusters)
                 for table, clusters in found.items()]
        raise RuntimeError(
            "Cannot make group and project paths unique ignoring case: these differ only "
            "in case:\n" + "\n".join(lines) + "\nRename all but one of each (the database "
            "rows and DATA_DIR/repositories/<path>.git), then run the migration again.")
    for table in TABLES:
        op.create_index(f"uq_{table}_full_path_lower", table, [sa.text("lower(full_path)")],
                        unique=True)


def downgrade():
    for table in TABLES:
        op.drop_index(f"uq_{table}_full_path_lower", table_name=table)
