"""One path per project and group, ignoring case: the service, the CLI and the migration."""

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from webapp import create_app
from webapp.extensions import db
from webapp.services import accounts, registry
from webapp.services.errors import Invalid

from .conftest import fresh_database as make_fresh_database


def test_zeta_app_cannot_be_created_beside_zeta_app(ctx, make):
    make.project("zeta/app")
    with pytest.raises(Invalid) as refused:
        accounts.create_project("Zeta/app")
    assert "'zeta/app' differs only in case" in str(refused.value)
    with pytest.raises(Invalid):
        accounts.create_project("zeta/APP")
    with pytest.raises(Invalid, match="differs only in case"):
        accounts.create_group("ZETA")
    # So a registry name maps to exactly one project, whatever its case.
    assert registry.project_for("zeta/app/image").full_path == "zeta/app"


def test_lookups_ignore_case_and_new_paths_keep_the_parents_spelling(ctx, make):
    make.group("Tanuki")
    project = accounts.create_project("tanuki/Web")
    assert project.full_path == "Tanuki/Web"
    assert accounts.find_project("TANUKI/web").id == project.id


def test_the_database_refuses_a_case_twin_even_past_the_service(ctx, make):
    make.project("zeta/app")
    group = accounts.find_group("zeta")
    with pytest.raises(sa.exc.IntegrityError):
        db.session.execute(sa.text(
            "INSERT INTO projects (name, path, full_path, group_id, visibility, created_at) "
            "VALUES ('x', 'APP', 'zeta/APP', :g, 'private', CURRENT_TIMESTAMP)"), {"g": group.id})
        db.session.commit()
    db.session.rollback()


@pytest.fixture
def fresh_database(tmp_path):
    """An empty database of the kind the suite runs on (SQLite, or PostgreSQL)."""
    with make_fresh_database(tmp_path, "gatehouse_paths") as url:
        yield url


def test_the_migration_lists_colliding_paths_and_changes_nothing(fresh_database, tmp_path, capfd):
    app = create_app({"SQLALCHEMY_DATABASE_URI": fresh_database, "SECRET_KEY": "x",
                      "DATA_DIR": str(tmp_path / "data")})
    with app.app_context():
        upgrade(revision="i12_lfs")
        with db.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO groups (id, name, path, full_path, created_at) VALUES "
                "(1, 'Zeta', 'Zeta', 'Zeta', CURRENT_TIMESTAMP), "
                "(2, 'zeta', 'zeta', 'zeta', CURRENT_TIMESTAMP)"))
            conn.execute(sa.text(
                "INSERT INTO projects (id, name, path, full_path, group_id, visibility, created_at) "
                "VALUES (1, 'app', 'app', 'Zeta/app', 1, 'private', CURRENT_TIMESTAMP), "
                "(2, 'app', 'app', 'zeta/app', 2, 'private', CURRENT_TIMESTAMP), "
                "(3, 'ok', 'ok', 'zeta/ok', 2, 'private', CURRENT_TIMESTAMP)"))
        with pytest.raises(SystemExit):  # `flask db upgrade` prints the error and exits 1
            upgrade()
        message = capfd.readouterr().err
        assert "groups: Zeta, zeta" in message
        assert "projects: Zeta/app, zeta/app" in message
        assert "zeta/ok" not in message
        indexes = {i["name"] for i in sa.inspect(db.engine).get_indexes("projects")}
        assert "uq_projects_full_path_lower" not in indexes

        with db.engine.begin() as conn:  # the operator renames, and runs it again
            conn.execute(sa.text("UPDATE projects SET path = 'app2', full_path = 'Zeta/app2' WHERE id = 1"))
            conn.execute(sa.text("UPDATE projects SET full_path = 'zeta2/app', group_id = 1 WHERE id = 2"))
            conn.execute(sa.text("UPDATE projects SET group_id = 1 WHERE id = 3"))
            conn.execute(sa.text("UPDATE groups SET path = 'zeta2', full_path = 'zeta2' WHERE id = 2"))
        upgrade()
        downgrade(revision="i12_lfs")
        db.engine.dispose()
