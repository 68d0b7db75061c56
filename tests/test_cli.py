"""The operator CLI, as scripts call it."""
import json

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import DeployToken, Group, Membership, Project, User
from webapp.services import deploy_tokens


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def invoke(*args):
        return runner.invoke(args=list(args))
    return invoke


def count(app, model):
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_whole_setup_from_the_cli(app, cli):
    assert cli("users", "create", "alice", "--email", "a@example.com", "--password",
               "long-enough-pw", "--admin").exit_code == 0
    assert cli("groups", "create", "tanuki").exit_code == 0
    assert cli("groups", "create", "tanuki/infra").exit_code == 0
    assert cli("projects", "create", "tanuki/infra/deploy", "--visibility", "public").exit_code == 0
    result = cli("members", "add", "tanuki", "alice", "Maintainer")
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.scalar(sa.select(User))
        assert user.is_admin and user.check_password("long-enough-pw")
        assert db.session.scalar(sa.select(Project)).visibility == "public"
        assert db.session.scalar(sa.select(Membership)).access_level == 40


def test_deploy_token_create_prints_json_with_the_secret(app, cli, make):
    make.project("tanuki/app")
    result = cli("deploy-tokens", "create", "tanuki/app", "--name", "ci", "--scopes",
                 "read_repository,read_registry", "--username", "bot", "--expires-at", "2099-01-31")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["username"] == "bot" and data["token"].startswith("gldt-")
    assert data["expires_at"] == "2099-01-31T00:00:00.000Z"
    assert data["scopes"] == ["read_repository", "read_registry"]
    with app.app_context():
        assert deploy_tokens.find_active("bot", data["token"]).id == data["id"]


def test_list_and_revoke(app, cli, make):
    make.group("tanuki")
    token_id, _, secret = make.token("tanuki", name="group-ci")
    listed = [json.loads(line) for line in cli("deploy-tokens", "list", "tanuki").output.splitlines()]
    assert [(t["id"], t["revoked"]) for t in listed] == [(token_id, False)]
    assert secret not in cli("deploy-tokens", "list", "tanuki").output
    assert cli("deploy-tokens", "revoke", "tanuki", str(token_id)).exit_code == 0
    listed = json.loads(cli("deploy-tokens", "list", "tanuki").output)
    assert listed["revoked"] is True


@pytest.mark.parametrize("args, message", [
    (["deploy-tokens", "create", "nope/app", "--name", "x", "--scopes", "read_repository"],
     "No group or project at 'nope/app'"),
    (["deploy-tokens", "create", "tanuki/app", "--name", "x", "--scopes", "read_everything"],
     "Unknown scope: read_everything"),
    (["deploy-tokens", "create", "tanuki/app", "--name", "x", "--scopes", "read_repository",
      "--expires-at", "tomorrow"], "is not a date (use YYYY-MM-DD)"),
    (["deploy-tokens", "create", "tanuki/app", "--name", "x", "--scopes", "read_repository",
      "--expires-at", "2001-01-01"], "Expiration date must be in the future"),
    (["deploy-tokens", "revoke", "tanuki/app", "999"], "Deploy token not found"),
    (["members", "add", "tanuki", "alice", "boss"], "Unknown role 'boss'"),
    (["members", "add", "tanuki", "ghost", "developer"], "No user 'ghost'"),
    (["members", "add", "nope", "alice", "developer"], "No group or project at 'nope'"),
    (["projects", "create", "nope/app"], "Group 'nope' does not exist"),
    (["projects", "create", "tanuki/app"], "has already been taken"),
    (["projects", "create", "tanuki/App"], "'tanuki/app' differs only in case"),
    (["groups", "create", "Tanuki"], "'tanuki' differs only in case"),
    (["projects", "create", "tanuki/bad path"], "can contain only letters"),
    (["groups", "create", "api"], "'api' is reserved"),
    (["groups", "create", "a/b"], "Parent group 'a' does not exist"),
    (["users", "create", "alice", "--email", "x@example.com", "--password", "long-enough"],
     "has already been taken"),
    (["users", "create", "bob", "--email", "bob@example.com", "--password", "short"],
     "Password is too short"),
])
def test_errors_print_one_line_and_exit_non_zero(app, cli, make, args, message):
    make.project("tanuki/app")
    make.user("alice")
    before = count(app, DeployToken), count(app, Group), count(app, Project), count(app, User)
    result = cli(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (count(app, DeployToken), count(app, Group), count(app, Project), count(app, User)) == before


def test_seed_demo_only_on_an_empty_database(app, cli):
    first = cli("seed-demo")
    assert first.exit_code == 0 and "password:" in first.output
    assert count(app, Project) == 3
    second = cli("seed-demo")
    assert "nothing seeded" in second.output and count(app, Project) == 3
