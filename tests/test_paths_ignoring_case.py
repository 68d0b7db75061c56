"""One path per project and group, ignoring case: the service, the CLI and the migration."""

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from webapp import create_app
from webapp.extensions import db
from webapp.models import Group
from webapp.services import accounts, registry, repositories
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


@pytest.fixture
def bare_app(fresh_database, tmp_path):
    """The app on that database, unmigrated, in an app context: each test migrates it."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": fresh_database, "SECRET_KEY": "x",
                      "DATA_DIR": str(tmp_path / "data")})
    with app.app_context():
        yield app
        db.engine.dispose()


def test_the_migration_lists_colliding_paths_and_changes_nothing(bare_app, capfd):
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


@pytest.fixture
def check_raced_past(monkeypatch):
    """The moment of a race: the other create commits between our check and our insert."""
    monkeypatch.setattr(accounts, "_check_free", lambda full_path, errors: None)


def test_a_group_cannot_take_a_project_path_that_a_racing_create_took(ctx, make, check_raced_past):
    make.project("zeta/app")
    with pytest.raises(Invalid, match="'zeta/APP' has already been taken"):
        accounts.create_group("zeta/APP")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Group)
                             .where(sa.func.lower(Group.full_path) == "zeta/app")) == 0
    assert registry.project_for("zeta/app/image").full_path == "zeta/app"


def test_a_project_cannot_take_a_group_path_that_a_racing_create_took(ctx, make, check_raced_past):
    make.group("zeta/app")
    with pytest.raises(Invalid, match="'zeta/app' has already been taken"):
        accounts.create_project("zeta/app")
    assert accounts.find_project("zeta/app") is None
    # Nothing of the refused project is left: no row, no repository, no staged folder
    # (the group's folder may stay, empty).
    assert not repositories.path_for("zeta/app").exists()
    assert [p for p in repositories.root().rglob("*") if not p.is_dir() or p.suffix == ".git"] == []


def test_the_routes_migration_lists_a_path_that_is_both_and_changes_nothing(bare_app, capfd):
    upgrade(revision="0009")
    with db.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO groups (id, name, path, full_path, parent_id, created_at) VALUES "
            "(1, 'zeta', 'zeta', 'zeta', NULL, CURRENT_TIMESTAMP), "
            "(2, 'app', 'app', 'zeta/app', 1, CURRENT_TIMESTAMP)"))
        conn.execute(sa.text(
            "INSERT INTO projects (id, name, path, full_path, group_id, visibility, created_at) "
            "VALUES (1, 'app', 'App', 'zeta/App', 1, 'private', CURRENT_TIMESTAMP), "
            "(2, 'web', 'web', 'zeta/web', 1, 'private', CURRENT_TIMESTAMP)"))
    with pytest.raises(SystemExit):  # `flask db upgrade` prints the error and exits 1
        upgrade()
    message = capfd.readouterr().err
    assert "both a group and a project:\n  zeta/app\n" in message
    assert "zeta/web" not in message
    assert "routes" not in sa.inspect(db.engine).get_table_names()

    with db.engine.begin() as conn:  # the operator renames the project, and runs it again
        conn.execute(sa.text("UPDATE projects SET path = 'app2', full_path = 'zeta/app2' "
                             "WHERE id = 1"))
    upgrade()
    with db.engine.connect() as conn:
        routes = conn.execute(sa.text(
            "SELECT path, group_id, project_id FROM routes ORDER BY path")).all()
    assert [tuple(r) for r in routes] == [("zeta", 1, None), ("zeta/app", 2, None),
                                          ("zeta/app2", None, 1), ("zeta/web", None, 2)]
    with pytest.raises(sa.exc.IntegrityError):  # the database itself now refuses it
        with db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO routes (path, project_id) VALUES ('ZETA/App', 1)"))
    downgrade(revision="0009")
    assert "routes" not in sa.inspect(db.engine).get_table_names()
