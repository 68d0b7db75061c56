"""The deploy token rules, through the service."""
import hmac
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import AuditEvent, DeployToken
from webapp.services import accounts, credentials, deploy_tokens, secret_tokens
from webapp.services.credentials import DEPLOY_TOKEN, Credentials, Door
from webapp.services.errors import DomainError, Invalid, NotFound
from webapp.services.policy import Action, can

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def project(ctx, make):
    make.project("tanuki/awesome_project")
    return accounts.find_project("tanuki/awesome_project")


GIT = Door("git", passwords=True, basic_tokens=frozenset({DEPLOY_TOKEN}))


def reaches(username, secret, target, *, ip=None):
    """The path a git request takes: the one chain, then the policy; None when refused."""
    try:
        principal = credentials.authenticate(Credentials(username=username, password=secret),
                                             GIT, ip=ip)
    except DomainError:
        return None
    return principal if can(principal, Action.READ_PROJECT, target) else None


def create(owner, **kw):
    kw.setdefault("name", "deploy")
    kw.setdefault("scopes", ["read_repository"])
    return deploy_tokens.create(owner, **kw)


def test_secret_is_prefixed_and_url_safe(project):
    _, secret = create(project)
    assert re.fullmatch(r"gldt-[A-Za-z0-9_-]{20}[0-9A-Za-z]{6}", secret)


def test_secret_prefix_is_configurable(app, project):
    app.config["DEPLOY_TOKEN_PREFIX"] = "acme-gldt-"
    _, secret = create(project)
    assert secret.startswith("acme-gldt-") and len(secret) == len("acme-gldt-") + 26


def test_secrets_differ(project):
    assert create(project)[1] != create(project)[1]


def test_only_the_digest_is_stored(project):
    token, secret = create(project)
    row = db.session.execute(sa.text("SELECT * FROM deploy_tokens")).mappings().one()
    assert secret not in [str(v) for v in row.values()]
    assert row["token_digest"] == secret_tokens.digest(secret)


def test_plain_secret_appears_nowhere_in_the_database(app, project):
    _, secret = create(project, name="ci")
    body = secret[len("gldt-"):]
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(sa.select(table)).all():
            assert not any(body in str(value) for value in row), table.name
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite"):  # and not in the file's bytes either (free pages, WAL)
        db.session.remove()
        db.engine.dispose()
        path = Path(url.removeprefix("sqlite:///"))
        data = path.read_bytes()
        for extra in (Path(f"{path}-wal"), Path(f"{path}-journal")):
            data += extra.read_bytes() if extra.exists() else b""
        assert body.encode() not in data


def test_default_username_uses_the_id(project):
    token, _ = create(project)
    assert token.username == f"gitlab+deploy-token-{token.id}"
    assert token.custom_username is None


def test_custom_username_with_allowed_characters(project):
    token, _ = create(project, username="ci.bot+deploy_1-x")
    assert token.username == "ci.bot+deploy_1-x"


def test_names_and_usernames_need_not_be_unique(project):
    a, _ = create(project, name="same", username="bot")
    b, _ = create(project, name="same", username="bot")
    assert a.id != b.id


@pytest.mark.parametrize("kwargs, field, message", [
    ({"name": ""}, "name", "Name can't be blank"),
    ({"name": "   "}, "name", "Name can't be blank"),
    ({"name": "x" * 256}, "name", "Name is too long (maximum is 255 characters)"),
    ({"username": "x" * 256}, "username", "Username is too long (maximum is 255 characters)"),
    ({"username": "bad name"}, "username",
     "Username can contain only letters, digits, '_', '-', '+', and '.'"),
    ({"username": "ünïcode"}, "username",
     "Username can contain only letters, digits, '_', '-', '+', and '.'"),
    ({"scopes": []}, "scopes", "Scopes can't be blank: select at least one scope"),
    ({"scopes": ["write_repository"]}, "scopes",
     "Unknown scope: write_repository. Valid scopes are read_repository, read_registry, "
     "write_registry, read_package_registry, write_package_registry"),
    ({"expires_at": NOW}, "expires_at", "Expiration date must be in the future"),
    ({"expires_at": NOW - timedelta(days=1)}, "expires_at", "Expiration date must be in the future"),
])
def test_invalid_input_is_rejected_with_its_message_and_creates_nothing(project, kwargs, field, message):
    with pytest.raises(Invalid) as raised:
        create(project, now=NOW, **kwargs)
    assert raised.value.errors[field] == [message]
    assert db.session.scalar(sa.select(sa.func.count(DeployToken.id))) == 0
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id)).where(
        AuditEvent.action == "deploy_token_created")) == 0


def test_every_broken_rule_is_reported_at_once(project):
    with pytest.raises(Invalid) as raised:
        create(project, name="", username="a b", scopes=[])
    assert set(raised.value.errors) == {"name", "username", "scopes"}


def test_longest_allowed_name_and_username(project):
    token, _ = create(project, name="n" * 255, username="u" * 255)
    assert len(token.name) == 255 and len(token.username) == 255


def test_scopes_are_stored_and_read_back_in_order(project):
    token, _ = create(project, scopes=["write_package_registry", "read_registry", "read_registry"])
    assert token.scopes == ["read_registry", "write_package_registry"]


def test_expiry_date_means_midnight_utc():
    assert deploy_tokens.expiry_from_date(date(2026, 12, 1)) == datetime(
        2026, 12, 1, tzinfo=timezone.utc)


def test_token_works_until_the_last_microsecond_before_midnight_utc(project):
    expires = deploy_tokens.expiry_from_date(date(2026, 12, 1))
    token, secret = create(project, expires_at=expires, now=NOW)
    just_before = expires - timedelta(microseconds=1)
    assert deploy_tokens.find_active(token.username, secret, now=just_before) is not None
    assert not token.expired_at(just_before)


def test_token_stops_at_midnight_utc_exactly(project):
    expires = deploy_tokens.expiry_from_date(date(2026, 12, 1))
    token, secret = create(project, expires_at=expires, now=NOW)
    assert deploy_tokens.find_active(token.username, secret, now=expires) is None
    assert token.expired_at(expires)


def test_expiry_survives_the_database_round_trip_as_aware_utc(project):
    expires = deploy_tokens.expiry_from_date(date(2026, 12, 1))
    token, _ = create(project, expires_at=expires, now=NOW)
    db.session.expire_all()
    again = db.session.get(DeployToken, token.id)
    assert again.expires_at == expires and again.expires_at.tzinfo is not None


def test_no_expiry_never_expires(project):
    token, secret = create(project)
    far = datetime(2999, 1, 1, tzinfo=timezone.utc)
    assert deploy_tokens.find_active(token.username, secret, now=far) is not None


def test_revoked_token_never_authenticates(project):
    token, secret = create(project)
    deploy_tokens.DEPLOY_TOKENS.revoke(project, token.id)
    assert deploy_tokens.find_active(token.username, secret) is None
    assert reaches(token.username, secret, project) is None


def test_revoke_is_recorded_once_and_cannot_be_undone(project):
    token, _ = create(project)
    deploy_tokens.DEPLOY_TOKENS.revoke(project, token.id)
    first = token.revoked_at
    deploy_tokens.DEPLOY_TOKENS.revoke(project, token.id)
    assert token.revoked and token.revoked_at == first
    actions = db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions.count("deploy_token_revoked") == 1


def test_revoking_another_owners_token_is_not_found(ctx, make, project):
    make.project("other/thing")
    other = accounts.find_project("other/thing")
    token, _ = create(other)
    with pytest.raises(NotFound):
        deploy_tokens.DEPLOY_TOKENS.revoke(project, token.id)
    assert not db.session.get(DeployToken, token.id).revoked


def test_wrong_username_is_refused(project):
    token, secret = create(project, username="deployer")
    assert deploy_tokens.find_active("deployer", secret) is not None
    assert deploy_tokens.find_active("Deployer", secret) is None
    assert deploy_tokens.find_active("deployer ", secret) is None
    assert deploy_tokens.find_active(f"gitlab+deploy-token-{token.id}", secret) is None


def test_wrong_secret_is_refused(project):
    token, secret = create(project)
    assert deploy_tokens.find_active(token.username, secret[:-1] + ("x" if secret[-1] != "x" else "y")) is None
    assert deploy_tokens.find_active(token.username, "") is None


def test_username_is_compared_in_constant_time(project, monkeypatch):
    token, secret = create(project, username="deployer")
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(deploy_tokens.hmac, "compare_digest", spy)
    assert deploy_tokens.find_active("deployer", secret) is not None
    assert deploy_tokens.find_active("intruder", secret) is None
    assert calls == [(b"deployer", b"deployer"), (b"intruder", b"deployer")]


def test_project_token_covers_only_its_project(ctx, make, project):
    make.project("tanuki/other")
    other = accounts.find_project("tanuki/other")
    token, secret = create(project)
    assert reaches(token.username, secret, project) is not None
    assert reaches(token.username, secret, other) is None
    assert reaches(token.username, secret, project.group) is None


def test_group_token_covers_subgroups_and_their_projects(ctx, make):
    make.project("tanuki/infra/deep/service")
    make.project("tanuki/web")
    make.project("outsider/thing")
    make.group("tanuki-lookalike")
    tanuki = accounts.find_group("tanuki")
    token, secret = create(tanuki)
    for path in ("tanuki/infra/deep/service", "tanuki/web"):
        assert reaches(token.username, secret, accounts.find_project(path))
    assert reaches(token.username, secret, accounts.find_group("tanuki/infra/deep"))
    assert reaches(token.username, secret, accounts.find_project("outsider/thing")) is None
    assert reaches(token.username, secret, accounts.find_group("tanuki-lookalike")) is None


def test_subgroup_token_does_not_cover_its_parent(ctx, make):
    make.project("tanuki/infra/deploy")
    make.project("tanuki/web")
    token, secret = create(accounts.find_group("tanuki/infra"))
    assert reaches(token.username, secret, accounts.find_project("tanuki/infra/deploy"))
    assert reaches(token.username, secret, accounts.find_project("tanuki/web")) is None


def test_last_use_is_recorded_with_time_and_ip(project):
    token, secret = create(project)
    assert token.last_used_at is None
    before = deploy_tokens.utcnow()
    reaches(token.username, secret, project, ip="10.1.2.3")
    db.session.expire_all()
    again = db.session.get(DeployToken, token.id)
    assert again.last_used_at >= before and again.last_used_ip == "10.1.2.3"


def test_last_use_is_written_at_most_once_a_minute(project):
    token, _ = create(project)
    assert deploy_tokens.DEPLOY_TOKENS.touch(token.id, "10.0.0.1", now=NOW)
    assert not deploy_tokens.DEPLOY_TOKENS.touch(token.id, "10.0.0.2", now=NOW + timedelta(seconds=59))
    db.session.expire_all()
    assert db.session.get(DeployToken, token.id).last_used_ip == "10.0.0.1"
    assert deploy_tokens.DEPLOY_TOKENS.touch(token.id, "10.0.0.3", now=NOW + timedelta(seconds=61))
    db.session.expire_all()
    assert db.session.get(DeployToken, token.id).last_used_ip == "10.0.0.3"


def test_failed_authentication_records_no_use(project):
    token, secret = create(project)
    reaches("someone-else", secret, project, ip="10.0.0.9")
    db.session.expire_all()
    assert db.session.get(DeployToken, token.id).last_used_at is None


def test_create_and_revoke_are_audited_with_who_what_when_where(ctx, make, project):
    alice = make.user("alice")
    actor = accounts.find_user("alice")
    token, _ = create(project, name="ci", scopes=["read_registry"], actor=actor, ip="192.0.2.7")
    deploy_tokens.DEPLOY_TOKENS.revoke(project, token.id, actor=actor, ip="192.0.2.8")
    events = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)).all()
    created, revoked = events[-2:]
    assert (created.action, created.actor_name, created.ip, created.target_id) == (
        "deploy_token_created", "alice", "192.0.2.7", token.id)
    assert created.details["scopes"] == ["read_registry"] and created.details["name"] == "ci"
    assert created.details["owner"] == "tanuki/awesome_project"
    assert (revoked.action, revoked.ip) == ("deploy_token_revoked", "192.0.2.8")
    assert created.created_at.tzinfo is not None
    assert alice.username == "alice"


def test_list_filters_active_and_inactive(project):
    live, _ = create(project, name="live")
    gone, _ = create(project, name="gone")
    deploy_tokens.DEPLOY_TOKENS.revoke(project, gone.id)
    soon = deploy_tokens.expiry_from_date((NOW + timedelta(days=2)).date())
    lapsing, _ = create(project, name="lapsing", expires_at=soon, now=NOW)
    later = soon + timedelta(hours=1)
    assert [t.name for t in deploy_tokens.DEPLOY_TOKENS.list_for(project, active=True, now=later)] == ["live"]
    assert {t.name for t in deploy_tokens.DEPLOY_TOKENS.list_for(project, active=False, now=later)} == {"gone", "lapsing"}
    assert len(deploy_tokens.DEPLOY_TOKENS.list_for(project)) == 3


def test_a_recent_use_seen_on_load_costs_no_query(app, project):
    from sqlalchemy import event

    token, secret = create(project)
    first = credentials.for_token(DEPLOY_TOKEN, deploy_tokens.find_active(token.username, secret))
    credentials.record_use(first, "10.0.0.1")  # never used: written
    again = credentials.for_token(DEPLOY_TOKEN, deploy_tokens.find_active(token.username, secret))
    assert again.last_used_at is not None
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        credentials.record_use(again, "10.0.0.2")
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert statements == []
    db.session.expire_all()
    assert db.session.get(DeployToken, token.id).last_used_ip == "10.0.0.1"
