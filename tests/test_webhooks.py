"""Webhooks: SSRF rules, signed deliveries to a real HTTP receiver, retries from the queue."""
import hashlib
import hmac
import json
import threading
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import Webhook, WebhookDelivery, utcnow
from webapp.services import expiry_warnings, webhooks

from .support import free_port

PROJECT = "tanuki/awesome_project"
ENCODED = "tanuki%2Fawesome_project"


@contextmanager
def receiver(port: int, status: int = 200):
    """A real HTTP server on 127.0.0.1:port that records every POST."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((dict(self.headers), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def key(make):
    make.project(PROJECT)
    make.user("maria")
    make.member("tanuki", "maria", "maintainer")
    return make.pat("maria")


def _hook(client, key, url, kind="projects", ref=ENCODED, **extra):
    return client.post(f"/api/v4/{kind}/{ref}/hooks", headers={"PRIVATE-TOKEN": key},
                       json={"url": url, **extra})


def _hooks(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(Webhook.id)))


@pytest.mark.parametrize("url, message", [
    ("ftp://example.com/hook", "URL must use http or https"),
    ("javascript:alert(1)", "URL must use http or https"),
    ("http://127.0.0.1:9/hook", "local or private address (127.0.0.1)"),
    ("http://10.1.2.3/hook", "local or private address (10.1.2.3)"),
    ("http://[::1]/hook", "local or private address (::1)"),
    ("http://169.254.169.254/latest/meta-data", "local or private address (169.254.169.254)"),
    ("http://localhost/hook", "local or private address"),
    ("", "URL can't be blank"),
])
def test_refused_urls_are_field_errors_and_create_nothing(app, client, key, url, message):
    response = _hook(client, key, url)
    assert response.status_code == 400
    assert message in response.get_json()["message"]["url"][0]
    assert _hooks(app) == 0


def test_an_admin_setting_allows_local_targets(app, client, key):
    app.config["WEBHOOK_ALLOW_LOCAL"] = True
    response = _hook(client, key, "http://127.0.0.1:9/hook", token="s3cret")
    assert response.status_code == 201
    body = response.get_json()
    assert body["url"] == "http://127.0.0.1:9/hook" and body["deploy_token_events"] is True
    assert "token" not in body
    listed = client.get(f"/api/v4/projects/{ENCODED}/hooks",
                        headers={"PRIVATE-TOKEN": key}).get_json()
    assert [h["id"] for h in listed] == [body["id"]]


def test_developers_cannot_manage_hooks(app, client, key, make):
    make.user("dev")
    make.member("tanuki", "dev", "developer")
    assert _hook(client, make.pat("dev"), "https://example.com/").status_code == 403


def test_a_revoke_is_delivered_signed_and_never_by_the_request(app, client, key, make):
    app.config["WEBHOOK_ALLOW_LOCAL"] = True
    port = free_port()
    hook_id = _hook(client, key, f"http://127.0.0.1:{port}/hook", token="hook-secret",
                    kind="groups", ref="tanuki").get_json()["id"]  # a group hook hears projects
    token_id, _, _ = make.token(PROJECT, name="leaky")
    with receiver(port) as seen:
        assert client.delete(f"/api/v4/projects/{ENCODED}/deploy_tokens/{token_id}",
                             headers={"PRIVATE-TOKEN": key}).status_code == 204
        assert seen == []  # queued, not sent by the request
        result = app.test_cli_runner().invoke(args=["webhooks", "deliver"])
        assert result.exit_code == 0 and "2 delivered" in result.output, result.output
    events = [json.loads(body)["event_name"] for _, body in seen]
    assert events == ["deploy_token_created", "deploy_token_destroyed"]
    headers, body = seen[1]
    assert headers["X-Gitlab-Token"] == "hook-secret"
    expected = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Gatehouse-Signature"], expected)
    payload = json.loads(body)
    assert payload["deploy_token"]["id"] == token_id and payload["deploy_token"]["revoked"]
    assert payload["project"]["full_path"] == PROJECT
    deliveries = client.get(f"/api/v4/groups/tanuki/hooks/{hook_id}/deliveries",
                            headers={"PRIVATE-TOKEN": key}).get_json()
    assert [(d["event"], d["state"], d["response_status"]) for d in deliveries] == [
        ("deploy_token_destroyed", "delivered", 200), ("deploy_token_created", "delivered", 200)]


def test_a_failed_delivery_is_retried_after_the_receiver_comes_back(app, client, key, make):
    app.config["WEBHOOK_ALLOW_LOCAL"] = True
    port = free_port()
    _hook(client, key, f"http://127.0.0.1:{port}/hook", token="t")
    make.token(PROJECT, name="ci")
    now = utcnow()
    with app.app_context():
        assert webhooks.deliver_due(now=now) == {"delivered": 0, "retrying": 1, "failed": 0}
        delivery = db.session.scalar(sa.select(WebhookDelivery))
        assert (delivery.state, delivery.attempts) == ("pending", 1)
        assert delivery.next_attempt_at == now + timedelta(seconds=10)
        assert "refused" in delivery.last_error.lower()
        # Not due yet: nothing is tried.
        assert webhooks.deliver_due(now=now + timedelta(seconds=5))["retrying"] == 0
    with receiver(port) as seen, app.app_context():
        assert webhooks.deliver_due(now=now + timedelta(seconds=11))["delivered"] == 1
        assert len(seen) == 1
        delivery = db.session.scalar(sa.select(WebhookDelivery))
        assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 2, 200)


def test_a_receiver_that_keeps_failing_is_given_up_on(app, client, key, make):
    app.config["WEBHOOK_ALLOW_LOCAL"] = True
    port = free_port()
    _hook(client, key, f"http://127.0.0.1:{port}/hook")
    make.token(PROJECT, name="ci")
    with receiver(port, status=500) as seen, app.app_context():
        moment = utcnow()
        for _ in range(webhooks.MAX_ATTEMPTS):
            webhooks.deliver_due(now=moment)
            moment += webhooks.backoff(webhooks.MAX_ATTEMPTS)
        delivery = db.session.scalar(sa.select(WebhookDelivery))
        assert (delivery.state, delivery.last_status) == ("failed", 500)
        assert len(seen) == webhooks.MAX_ATTEMPTS


def test_rotation_and_the_expiry_pass_queue_events(app, client, key, make):
    app.config["WEBHOOK_ALLOW_LOCAL"] = True
    _hook(client, key, f"http://127.0.0.1:{free_port()}/hook")
    token_id, _, _ = make.token(PROJECT, expires_at=utcnow() + timedelta(days=3))
    client.post(f"/api/v4/projects/{ENCODED}/deploy_tokens/{token_id}/rotate",
                headers={"PRIVATE-TOKEN": key})
    app.config["SMTP_URL"] = None
    with app.app_context():
        expiry_warnings.run()
        expiry_warnings.run(now=utcnow() + timedelta(days=4))  # now expired
        expiry_warnings.run(now=utcnow() + timedelta(days=4))
        events = list(db.session.scalars(sa.select(WebhookDelivery.event)
                                         .order_by(WebhookDelivery.id)))
    assert events == ["deploy_token_created", "deploy_token_rotated", "deploy_token_expiring",
                      "deploy_token_expired"]
