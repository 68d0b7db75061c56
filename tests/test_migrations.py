"""Migrations that move data, run up and down on a database of their own (SQLite or PostgreSQL)."""
import pytest
import sqlalchemy as sa

from webapp import create_app
from webapp.extensions import db

from .conftest import fresh_database


@pytest.fixture
def fresh_url(tmp_path):
    with fresh_database(tmp_path, "gatehouse_migration") as url:
        yield url


def test_deploy_token_scopes_move_from_flags_to_one_list_and_back(fresh_url, tmp_path):
    from flask_migrate import downgrade, upgrade
    app = create_app({"SQLALCHEMY_DATABASE_URI": fresh_url, "SECRET_KEY": "x",
                      "DATA_DIR": str(tmp_path / "data")})
    with app.app_context():
        upgrade(revision="0003")
        with db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO groups (id, name, path, full_path, created_at) "
                                 "VALUES (1, 'g', 'g', 'g', CURRENT_TIMESTAMP)"))
            for token_id, flags in ((1, (True, False, True, False, True)),
                                    (2, (False, True, False, False, False))):
                conn.execute(sa.text(
                    "INSERT INTO deploy_tokens (id, name, token_digest, read_repository, "
                    "read_registry, write_registry, read_package_registry, "
                    "write_package_registry, revoked, group_id, created_at) VALUES "
                    "(:id, 'd', :digest, :a, :b, :c, :d, :e, false, 1, CURRENT_TIMESTAMP)"),
                    dict(id=token_id, digest=f"{token_id:064x}", a=flags[0], b=flags[1],
                         c=flags[2], d=flags[3], e=flags[4]))
        upgrade(revision="0006")
        with db.engine.connect() as conn:
            rows = dict(conn.execute(sa.text("SELECT id, scopes FROM deploy_tokens")).all())
            assert rows == {1: "read_repository,write_registry,write_package_registry",
                            2: "read_registry"}
            conn.execute(sa.text("SELECT failed_attempts, locked_until FROM users"))
            conn.execute(sa.text("SELECT scopes, expires_at FROM runner_tokens"))
        downgrade(revision="0003")
        with db.engine.connect() as conn:
            back = conn.execute(sa.text(
                "SELECT read_repository, read_registry, write_registry FROM deploy_tokens "
                "ORDER BY id")).all()
            assert [tuple(bool(v) for v in row) for row in back] == [(True, False, True),
                                                                      (False, True, False)]
        db.engine.dispose()


def test_token_lifecycle_migrations_go_down_and_up_again(fresh_url, tmp_path):
    from flask_migrate import downgrade, upgrade
    app = create_app({"SQLALCHEMY_DATABASE_URI": fresh_url, "SECRET_KEY": "x",
                      "DATA_DIR": str(tmp_path / "data")})
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT previous_token_digest, previous_expires_at, allowed_ips "
                                 "FROM deploy_tokens"))
            conn.execute(sa.text("SELECT id FROM expiry_notifications"))
            conn.execute(sa.text("SELECT id FROM webhook_deliveries"))
        downgrade(revision="0006")
        with db.engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("runner_tokens")}
            assert "allowed_ips" not in columns and "previous_token_digest" not in columns
            assert not sa.inspect(conn).has_table("webhooks")
        upgrade()
        db.engine.dispose()
