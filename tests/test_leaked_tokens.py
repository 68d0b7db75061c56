"""Leak response: what a secret value is, and revoking it, for every token kind.

Also the checksum that lets a scanner tell a real new secret from noise offline.
"""
import json
import re

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import AuditEvent, DeployToken
from webapp.services import accounts, deploy_tokens, runners, secret_tokens
from webapp.services.deploy_tokens import DEPLOY_TOKENS
from webapp.services.personal_access_tokens import PERSONAL_ACCESS_TOKENS

PROJECT = "tanuki/awesome_project"
# The regular expressions README documents for secret scanners.
SCANNER_RES = {
    "deploy_token": re.compile(r"\bgldt-[0-9A-Za-z_-]{20}[0-9A-Za-z]{6}\b"),
    "personal_access_token": re.compile(r"\bglpat-[0-9A-Za-z_-]{20}[0-9A-Za-z]{6}\b"),
    "runner_token": re.compile(r"\bglrt-[0-9A-Za-z_-]{20}[0-9A-Za-z]{6}\b"),
}


@pytest.fixture
def secrets_of_every_kind(app, make):
    """(admin key, {kind: (id, secret)}) for a deploy, a personal access and a runner token."""
    make.project(PROJECT)
    make.user("alice")
    make.user("root", admin=True)
    admin_key = make.pat("root", name="admin")
    deploy_id, _, deploy = make.token(PROJECT)
    with app.app_context():
        pat, pat_secret = PERSONAL_ACCESS_TOKENS.create(
            accounts.find_user("alice"), name="laptop", scopes=["api"])
        runner, runner_secret = runners.RUNNER_TOKENS.create(accounts.find_project(PROJECT),
                                                             name="build")
        ids = {"personal_access_token": (pat.id, pat_secret),
               "runner_token": (runner.id, runner_secret)}
    ids["deploy_token"] = (deploy_id, deploy)
    return admin_key, ids


def test_new_secrets_carry_a_checksum_that_scanners_can_verify(app, secrets_of_every_kind):
    _, ids = secrets_of_every_kind
    prefixes = {"deploy_token": "gldt-", "personal_access_token": "glpat-",
                "runner_token": "glrt-"}
    for kind, (_, secret) in ids.items():
        assert SCANNER_RES[kind].fullmatch(secret)
        assert secret_tokens.has_valid_checksum(secret, prefixes[kind])
        # One changed character breaks it (a random string passes 1 time in 2**32).
        tampered = secret[:-7] + ("A" if secret[-7] != "A" else "B") + secret[-6:]
        assert not secret_tokens.has_valid_checksum(tampered, prefixes[kind])


def test_old_secrets_without_a_checksum_keep_working(app, make):
    make.project(PROJECT)
    token_id, username, _ = make.token(PROJECT)
    old = "gldt-" + "a" * 20  # the format before checksums
    with app.app_context():
        db.session.execute(sa.update(DeployToken).values(
            token_digest=secret_tokens.digest(old)))
        db.session.commit()
        assert deploy_tokens.find_active(username, old).id == token_id


@pytest.mark.parametrize("kind", ["deploy_token", "personal_access_token", "runner_token"])
def test_admin_identifies_and_revokes_a_value_of_every_kind(app, client, secrets_of_every_kind,
                                                             kind):
    admin_key, ids = secrets_of_every_kind
    token_id, secret = ids[kind]
    headers = {"PRIVATE-TOKEN": admin_key}
    info = client.post("/api/v4/admin/token", headers=headers, json={"token": secret})
    assert info.status_code == 200 and info.headers["Cache-Control"] == "no-store"
    body = info.get_json()
    assert (body["kind"], body["id"], body["state"], body["matched"]) == (
        kind, token_id, "active", "current")
    assert {"owner", "scopes", "last_used_at", "expires_at", "revoked"} <= set(body)
    assert "token" not in body
    owner = body["owner"]
    assert owner == ({"type": "user", "id": owner["id"], "username": "alice"}
                     if kind == "personal_access_token"
                     else {"type": "project", "id": owner["id"], "full_path": PROJECT})

    assert client.delete("/api/v4/admin/token", headers=headers,
                         json={"token": secret}).status_code == 204
    again = client.post("/api/v4/admin/token", headers=headers, json={"token": secret})
    assert again.get_json()["state"] == "revoked"
    with app.app_context():
        assert secret_tokens.KINDS[kind].find_active(secret) is None
        [event] = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.action == f"{kind}_revoked"))
        assert event.details["leaked"] is True and event.actor_name == "root"


def test_a_leaked_previous_secret_loses_its_grace_but_the_new_secret_lives(
        app, client, secrets_of_every_kind):
    admin_key, ids = secrets_of_every_kind
    token_id, old = ids["deploy_token"]
    with app.app_context():
        _, new = DEPLOY_TOKENS.rotate(accounts.find_project(PROJECT), token_id)
    headers = {"PRIVATE-TOKEN": admin_key}
    body = client.post("/api/v4/admin/token", headers=headers, json={"token": old}).get_json()
    assert (body["matched"], body["state"]) == ("previous", "in_grace")
    assert client.delete("/api/v4/admin/token", headers=headers,
                         json={"token": old}).status_code == 204
    with app.app_context():
        assert DEPLOY_TOKENS.find_active(old) is None
        assert DEPLOY_TOKENS.find_active(new).id == token_id


def test_unknown_values_and_bad_bodies(app, client, secrets_of_every_kind):
    admin_key, _ = secrets_of_every_kind
    headers = {"PRIVATE-TOKEN": admin_key}
    unknown = client.post("/api/v4/admin/token", headers=headers,
                          json={"token": "gldt-" + "z" * 26})
    assert unknown.status_code == 404 and unknown.get_json() == {"message": "404 Token Not Found"}
    assert client.delete("/api/v4/admin/token", headers=headers,
                         json={"token": "nope"}).status_code == 404
    assert client.post("/api/v4/admin/token", headers=headers, json={}).get_json() == {
        "error": "token is missing"}
    assert client.post("/api/v4/admin/token", headers=headers,
                       json={"token": 5}).status_code == 400
    in_url = client.post("/api/v4/admin/token?token=gldt-abc", headers=headers)
    assert in_url.status_code == 400 and "request body" in in_url.get_json()["error"]


def test_only_admins_may_ask(app, client, make, secrets_of_every_kind):
    _, ids = secrets_of_every_kind
    alice_key = make.pat("alice", name="second")
    secret = ids["deploy_token"][1]
    for method in (client.post, client.delete):
        response = method("/api/v4/admin/token", headers={"PRIVATE-TOKEN": alice_key},
                          json={"token": secret})
        assert response.status_code == 403
    assert client.post("/api/v4/admin/token", json={"token": secret}).status_code == 401
    with app.app_context():
        assert DEPLOY_TOKENS.find_active(secret) is not None


def test_cli_reads_values_from_stdin_one_per_line(app, secrets_of_every_kind):
    _, ids = secrets_of_every_kind
    values = [ids[k][1] for k in ("deploy_token", "personal_access_token", "runner_token")]
    stdin = "\n".join(["# from the scanner", *values, "", "glpat-notatokenatall000000"]) + "\n"
    cli = app.test_cli_runner()
    looked = cli.invoke(args=["tokens", "identify"], input=stdin)
    assert looked.exit_code == 0
    reports = [json.loads(line) for line in looked.output.splitlines()]
    assert [r["state"] for r in reports[:3]] == ["active"] * 3
    assert reports[3] == {"value": "glpat-not…", "found": False}
    assert not any(v in looked.output for v in values)  # never echoes a whole secret

    revoked = cli.invoke(args=["tokens", "revoke"], input=stdin)
    assert revoked.exit_code == 1  # one value matched nothing
    reports = [json.loads(line) for line in revoked.output.splitlines()]
    assert [r.get("kind") for r in reports] == ["deploy_token", "personal_access_token",
                                                "runner_token", None]
    assert [r.get("state") for r in reports[:3]] == ["revoked"] * 3
    with app.app_context():
        for kind, (_, secret) in ids.items():
            assert secret_tokens.KINDS[kind].find_active(secret) is None
