"""Expiry warnings by mail: who gets them, once per threshold, through a real SMTP server."""
import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import ExpiryNotification, utcnow
from webapp.services import expiry_warnings

from .smtp import smtp_server
from .support import free_port

PROJECT = "tanuki/infra/app"
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture
def people(make):
    """Owner of tanuki, maintainer of tanuki/infra, maintainer of the project, a developer."""
    make.project(PROJECT)
    for name, path, role in (("olga", "tanuki", "owner"), ("mike", "tanuki/infra", "maintainer"),
                             ("pia", PROJECT, "maintainer"), ("dev", "tanuki", "developer")):
        make.user(name)
        make.member(path, name, role)


def _run(app, now=None):
    with app.app_context():
        return expiry_warnings.run(now=now)


@pytest.mark.parametrize("days_left, threshold", [
    (40, None), (30, 30), (29.5, 30), (8, 30), (7, 7), (5, 7), (1, 1), (0.2, 1), (-1, None)])
def test_the_nearest_threshold_passed(days_left, threshold):
    now = utcnow()
    assert expiry_warnings.due_threshold(now + timedelta(days=days_left), now,
                                         [30, 7, 1]) == threshold


def test_maintainers_and_owners_through_groups_get_one_mail_per_threshold(app, make, people):
    make.token(PROJECT, ["read_repository", "read_registry"], name="ci",
               expires_at=utcnow() + timedelta(days=20))
    with smtp_server() as (url, received):
        app.config["SMTP_URL"] = url
        summary = _run(app)
        assert (summary.tokens, summary.mails) == (1, 3)
        _run(app)  # the same threshold again: nothing
        assert sorted(r[0] for rcpts, _ in received.mails for r in [rcpts]) == [
            "mike@example.com", "olga@example.com", "pia@example.com"]
        assert received.to("dev@example.com") == []
        [mail] = received.to("pia@example.com")
        assert mail["Subject"] == f"Deploy token ci of {PROJECT} expires in 20 days"
        body = mail.get_content()
        assert "Scopes: read_repository, read_registry" in body
        assert "Last used: never used" in body
        assert f"/{PROJECT}/-/settings/repository#deploy-tokens" in body
        assert "/deploy_tokens/" in body and "/rotate" in body

        # Thirteen days later the 7-day threshold is passed: one more mail each.
        _run(app, now=utcnow() + timedelta(days=14))
        assert len(received.mails) == 6
        assert "expires in 6 days" in received.to("olga@example.com")[-1]["Subject"]


def test_a_token_past_several_thresholds_gets_one_mail_for_the_nearest(app, make, people):
    token_id, _, _ = make.token(PROJECT, name="late", expires_at=utcnow() + timedelta(hours=20))
    with smtp_server() as (url, received):
        app.config["SMTP_URL"] = url
        _run(app)
        _run(app)
        assert len(received.to("pia@example.com")) == 1
        assert received.to("pia@example.com")[0]["Subject"].endswith("expires tomorrow")
    with app.app_context():
        rows = db.session.scalars(sa.select(ExpiryNotification)).all()
        assert [(r.token_id, r.threshold_days, r.recipients) for r in rows] == [(token_id, 1, 3)]


def test_group_tokens_warn_the_groups_maintainers_and_pats_their_owner(app, make, people):
    make.token("tanuki/infra", name="group-ci", expires_at=utcnow() + timedelta(days=3))
    make.pat("dev", name="laptop", expires_at=utcnow() + timedelta(days=6))
    with smtp_server() as (url, received):
        app.config["SMTP_URL"] = url
        _run(app)
        assert {r for rcpts, _ in received.mails for r in rcpts} == {
            "olga@example.com", "mike@example.com", "dev@example.com"}
        [pat_mail] = received.to("dev@example.com")
        assert pat_mail["Subject"] == "Your personal access token laptop expires in 6 days"
        assert "/personal_access_tokens/" in pat_mail.get_content()


def test_revoked_expired_and_distant_tokens_are_not_warned(app, make, people):
    make.token(PROJECT, name="revoked", expires_at=utcnow() + timedelta(days=2), revoked=True)
    make.token(PROJECT, name="expired", expires_at=utcnow() - timedelta(days=1))
    make.token(PROJECT, name="distant", expires_at=utcnow() + timedelta(days=60))
    make.token(PROJECT, name="never")
    with smtp_server() as (url, received):
        app.config["SMTP_URL"] = url
        assert _run(app).tokens == 0
        assert received.mails == []


def test_thresholds_are_configurable(app, make, people):
    make.token(PROJECT, name="ci", expires_at=utcnow() + timedelta(days=20))
    app.config["EXPIRY_WARNING_DAYS"] = "14,3"
    with smtp_server() as (url, received):
        app.config["SMTP_URL"] = url
        assert _run(app).tokens == 0
        assert _run(app, now=utcnow() + timedelta(days=7)).tokens == 1
        assert "expires in 13 days" in received.mails[0][1]["Subject"]


def test_smtp_login_when_the_url_has_a_user(app, make, people):
    make.token(PROJECT, name="ci", expires_at=utcnow() + timedelta(days=2))
    with smtp_server(login=("mailer", "s3cret pass")) as (url, received):
        app.config["SMTP_URL"] = url.replace("s3cret pass", "s3cret%20pass")
        assert _run(app).mails == 3
        assert received.logins == ["mailer"]


def test_a_failed_delivery_is_retried_by_the_next_pass(app, make, people):
    make.token(PROJECT, name="ci", expires_at=utcnow() + timedelta(days=2))
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"  # nothing listens there
    summary = _run(app)
    assert (summary.tokens, summary.failed) == (0, 1)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(ExpiryNotification.id))) == 0
    with smtp_server() as (url, received):
        app.config["SMTP_URL"] = url
        assert _run(app).mails == 3
        assert len(received.mails) == 3


def test_without_smtp_the_pass_logs_what_it_would_send(app, make, people, caplog):
    make.token(PROJECT, name="ci", expires_at=utcnow() + timedelta(days=2))
    app.config["SMTP_URL"] = None
    with caplog.at_level(logging.INFO):
        assert _run(app).mails == 3
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "would send to pia@example.com" in logged and "Deploy token ci of" in logged


def test_the_cli_command(app, make, people):
    make.token(PROJECT, name="ci", expires_at=utcnow() + timedelta(days=2))
    with smtp_server() as (url, received):
        app.config["SMTP_URL"] = url
        result = app.test_cli_runner().invoke(args=["notify"])
        assert result.exit_code == 0, result.output
        assert "1 token(s), 3 mail(s) sent" in result.output
