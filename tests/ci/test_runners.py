"""Runner tokens: the service, the Principal they become, the policy, and the CLI."""
import json

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import AuditEvent, RunnerToken
from webapp.services import accounts, credentials, runners
from webapp.services.errors import Invalid, NotFound
from webapp.protocols.ci import DOOR as CI_DOOR
from webapp.protocols.git_http import DOOR as GIT_DOOR
from webapp.services import secret_tokens
from webapp.services.policy import Action, can

from ..support import resolve

PROJECT = "tanuki/app"


@pytest.fixture
def project(make):
    return make.project(PROJECT)


def test_create_shows_the_secret_once_and_stores_its_digest(project, ctx):
    token, secret = runners.RUNNER_TOKENS.create(accounts.find_project(PROJECT), name=" build 1 ")
    assert secret.startswith("glrt-") and len(secret) == len("glrt-") + 26
    row = db.session.get(RunnerToken, token.id)
    assert row.token_digest == secret_tokens.digest(secret)
    assert secret not in repr([getattr(row, c.key) for c in RunnerToken.__table__.columns])
    assert row.description == "build 1" and row.project_id == project.id
    event = db.session.scalar(sa.select(AuditEvent).where(
        AuditEvent.action == "runner_token_created"))
    assert event.target_id == token.id and secret not in json.dumps(event.details)


def test_secrets_are_unique(project, ctx):
    target = accounts.find_project(PROJECT)
    assert len({runners.RUNNER_TOKENS.create(target)[1] for _ in range(20)}) == 20


def test_description_is_limited(project, ctx):
    with pytest.raises(Invalid) as error:
        runners.RUNNER_TOKENS.create(accounts.find_project(PROJECT), name="x" * 256)
    assert "description" in error.value.errors
    assert db.session.scalar(sa.select(sa.func.count(RunnerToken.id))) == 0


def test_a_runner_token_resolves_to_a_runner_of_its_project(project, ctx):
    token, secret = runners.RUNNER_TOKENS.create(accounts.find_project(PROJECT))
    principal = resolve(CI_DOOR, secret=secret)
    assert principal.kind == "runner_token"
    assert (principal.project_id, principal.token_id) == (project.id, token.id)
    for wrong in (None, "", secret + "x", secret[:-1], "glrt-", secret.replace("glrt-", "gldt-")):
        assert resolve(CI_DOOR, secret=wrong) is None


def test_revoked_runner_tokens_resolve_to_nothing(project, ctx):
    target = accounts.find_project(PROJECT)
    token, secret = runners.RUNNER_TOKENS.create(target)
    runners.RUNNER_TOKENS.revoke(target, token.id)
    assert resolve(CI_DOOR, secret=secret) is None
    again = runners.RUNNER_TOKENS.revoke(target, token.id)  # idempotent
    assert again.revoked
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id)).where(
        AuditEvent.action == "runner_token_revoked")) == 1


def test_revoke_reaches_only_the_projects_own_runners(make, ctx):
    make.project(PROJECT)
    make.project("tanuki/other")
    token, _ = runners.RUNNER_TOKENS.create(accounts.find_project("tanuki/other"))
    with pytest.raises(NotFound):
        runners.RUNNER_TOKENS.revoke(accounts.find_project(PROJECT), token.id)
    assert not db.session.get(RunnerToken, token.id).revoked


def test_policy_lets_a_runner_read_only_its_projects_variables(make, ctx):
    mine, other = make.project(PROJECT), make.project("tanuki/other")
    _, secret = runners.RUNNER_TOKENS.create(accounts.find_project(PROJECT))
    runner = resolve(CI_DOOR, secret=secret)
    here, there = accounts.find_project(PROJECT), accounts.find_project("tanuki/other")
    assert can(runner, Action.READ_CI_VARIABLES, here)
    assert can(runner, Action.READ_CI_VARIABLES, there).status == 404
    assert can(runner, Action.READ_REPOSITORY, here).status == 403
    assert can(runner, Action.MANAGE_DEPLOY_TOKENS, here).status == 403
    assert mine.id != other.id


def test_nobody_else_reads_ci_variables(project, make, ctx):
    admin = make.user("admin", admin=True)
    _, username, secret = make.token(PROJECT, ["read_repository"])
    target = accounts.find_project(PROJECT)
    token_principal = resolve(GIT_DOOR, username=username, password=secret)
    assert not can(token_principal, Action.READ_CI_VARIABLES, target)
    assert not can(credentials.for_user(admin), Action.READ_CI_VARIABLES, target)


# CLI ----------------------------------------------------------------------------------

def _cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_cli_create_prints_the_token_as_json(project, app):
    result = _cli(app, "runners", "create", PROJECT, "--description", "build host 1")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["token"].startswith("glrt-") and printed["project"] == PROJECT
    assert printed["description"] == "build host 1"
    with app.app_context():
        assert resolve(CI_DOOR, secret=printed["token"]).project_id == project.id


@pytest.mark.parametrize("path", ["tanuki/nope", "tanuki"])
def test_cli_create_needs_a_project(project, app, path):
    result = _cli(app, "runners", "create", path)
    assert result.exit_code == 1
    assert f"No project at '{path}'" in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(RunnerToken.id))) == 0


def test_cli_list_and_revoke(project, app):
    secret = json.loads(_cli(app, "runners", "create", PROJECT).output)["token"]
    listed = [json.loads(line) for line in _cli(app, "runners", "list", PROJECT).output.splitlines()]
    assert len(listed) == 1 and not listed[0]["revoked"]
    assert secret not in json.dumps(listed)
    result = _cli(app, "runners", "revoke", PROJECT, str(listed[0]["id"]))
    assert result.exit_code == 0 and "Revoked runner token" in result.output
    with app.app_context():
        assert resolve(CI_DOOR, secret=secret) is None
    assert _cli(app, "runners", "revoke", PROJECT, "999").exit_code == 1
