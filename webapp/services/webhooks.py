"""Webhooks: signed JSON POSTs about deploy tokens, queued in the database and retried.

An event is queued in the transaction of the change that caused it (so it is sent if
and only if the change was committed) and delivered later by `flask webhooks deliver`,
never by the request. Each POST carries the hook's secret as `X-Gitlab-Token` (as
GitLab's hooks do) and `X-Gatehouse-Signature: sha256=<HMAC-SHA256 of the body>`. A
failed delivery is retried with exponential backoff; the queue survives restarts.

Only http(s) URLs are taken, and (against SSRF) only ones whose host resolves to public
addresses, unless GATEHOUSE_WEBHOOK_ALLOW_LOCAL is set by the operator. The check runs
when a hook is saved and again before every delivery; redirects are not followed.
"""
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any, Optional, Union
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import Group, Project, User, Webhook, WebhookDelivery, iso8601, utcnow
from . import audit, encryption
from .errors import Invalid, NotFound

Owner = Union[Project, Group]
EVENTS = ("deploy_token_created", "deploy_token_rotated", "deploy_token_revoked",
          "deploy_token_destroyed", "deploy_token_expiring", "deploy_token_expired")
MAX_ATTEMPTS = 8          # then the delivery is marked failed for good
FIRST_RETRY = 10          # seconds; doubled after every failure...
LONGEST_RETRY = 3600      # ...up to an hour
CLAIM_SECONDS = 300       # a delivery being sent is invisible to other passes this long
TIMEOUT = 10


def token_aad(hook_id: int) -> bytes:
    return b"webhooks.token_encrypted:%d" % hook_id


# ---------------------------------------------------------------- the URL rules


def check_url(url: Optional[str]) -> list[str]:
    """Every reason this URL may not be a webhook target; empty when it may."""
    url = (url or "").strip()
    if not url:
        return ["URL can't be blank"]
    if len(url) > 2048:
        return ["URL is too long (maximum is 2048 characters)"]
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return ["URL is not a valid URL"]
    if parts.scheme not in ("http", "https"):
        return ["URL must use http or https"]
    if not host:
        return ["URL must name a host"]
    if current_app.config.get("WEBHOOK_ALLOW_LOCAL"):
        return []
    try:
        infos = socket.getaddrinfo(host, port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return [f"URL host {host} does not resolve"]
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            return [f"URL points at a local or private address ({address}), which is refused "
                    f"(an administrator can allow it with GATEHOUSE_WEBHOOK_ALLOW_LOCAL)"]
    return []


# ---------------------------------------------------------------- hooks


def _owner_filter(owner: Owner):
    if isinstance(owner, Project):
        return Webhook.project_id == owner.id
    return Webhook.group_id == owner.id


def list_for(owner: Owner) -> list[Webhook]:
    return list(db.session.scalars(sa.select(Webhook).where(_owner_filter(owner))
                                   .order_by(Webhook.id)))


def get_for(owner: Owner, hook_id: int) -> Webhook:
    hook = db.session.scalar(sa.select(Webhook).where(_owner_filter(owner), Webhook.id == hook_id))
    if hook is None:
        raise NotFound("Hook not found")
    return hook


def create(owner: Owner, *, url: Optional[str], token: Optional[str] = None,
           deploy_token_events: bool = True, enable_ssl_verification: bool = True,
           actor: Optional[User] = None, ip: Optional[str] = None) -> Webhook:
    """Add a hook to a project or group (Invalid, and nothing saved, on a refused URL)."""
    errors = {}
    if problems := check_url(url):
        errors["url"] = problems
    if token is not None and (len(token) > 255 or any(ord(c) < 32 for c in token)):
        errors["token"] = ["Secret token must be at most 255 printable characters"]
    if errors:
        raise Invalid(errors)
    hook = Webhook(url=url.strip(), deploy_token_events=deploy_token_events,
                   enable_ssl_verification=enable_ssl_verification,
                   **({"project_id": owner.id} if isinstance(owner, Project)
                      else {"group_id": owner.id}))
    db.session.add(hook)
    db.session.flush()
    if token:
        hook.token_encrypted = encryption.encrypt(token, token_aad(hook.id))
    audit.record("webhook_created", hook, actor=actor, ip=ip, url=hook.url,
                 owner=owner.full_path)
    db.session.commit()
    return hook


def delete(owner: Owner, hook_id: int, *, actor: Optional[User] = None,
           ip: Optional[str] = None) -> None:
    hook = get_for(owner, hook_id)
    audit.record("webhook_destroyed", hook, actor=actor, ip=ip, url=hook.url,
                 owner=owner.full_path)
    db.session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.hook_id == hook.id))
    db.session.delete(hook)
    db.session.commit()


def deliveries(hook: Webhook, limit: int = 20) -> list[WebhookDelivery]:
    return list(db.session.scalars(sa.select(WebhookDelivery).where(
        WebhookDelivery.hook_id == hook.id).order_by(WebhookDelivery.id.desc()).limit(limit)))


# ---------------------------------------------------------------- events


def enqueue(event: str, token, *, now: Optional[datetime] = None) -> int:
    """Queue `event` about a deploy token for every hook that hears it (not committed).

    The hooks of the token's own project or group and of every group above it.
    """
    now = now or utcnow()
    owner = token.owner
    groups = owner.group.ancestors() if isinstance(owner, Project) else owner.ancestors()
    where = Webhook.group_id.in_([g.id for g in groups])
    if isinstance(owner, Project):
        where = sa.or_(where, Webhook.project_id == owner.id)
    hooks = db.session.scalars(sa.select(Webhook).where(where, Webhook.deploy_token_events))
    body = json.dumps(_payload(event, token, now), separators=(",", ":"))
    count = 0
    for hook in hooks:
        db.session.add(WebhookDelivery(hook_id=hook.id, event=event, payload=body,
                                       next_attempt_at=now, created_at=now))
        count += 1
    return count


def _payload(event: str, token, now: datetime) -> dict[str, Any]:
    owner = token.owner
    return {
        "object_kind": "deploy_token", "event_name": event, "created_at": iso8601(now),
        "deploy_token": {
            "id": token.id, "name": token.name, "username": token.username,
            "scopes": token.scopes, "expires_at": iso8601(token.expires_at),
            "revoked": token.revoked, "last_used_at": iso8601(token.last_used_at),
            "previous_token_expires_at": iso8601(
                token.previous_expires_at if token.in_grace_at(now) else None)},
        ("project" if isinstance(owner, Project) else "group"): {
            "id": owner.id, "full_path": owner.full_path},
    }


# ---------------------------------------------------------------- delivery


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> timedelta:
    """How long after the n-th failed attempt the next one is made."""
    return timedelta(seconds=min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect could lead anywhere, past the address check


def deliver_due(*, now: Optional[datetime] = None, limit: int = 100) -> dict[str, int]:
    """Send every delivery whose time has come; return counts by outcome."""
    now = now or utcnow()
    due_ids = list(db.session.scalars(
        sa.select(WebhookDelivery.id).where(WebhookDelivery.state == "pending",
                                            WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)))
    db.session.rollback()
    outcome = {"delivered": 0, "retrying": 0, "failed": 0}
    for delivery_id in due_ids:
        result = _deliver_one(delivery_id, now)
        if result:
            outcome[result] += 1
    return outcome


def _deliver_one(delivery_id: int, now: datetime) -> Optional[str]:
    # Claim it first (one conditional UPDATE, committed), so a concurrent pass skips it and
    # no transaction stays open while the receiver answers.
    claimed = db.session.execute(
        sa.update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == "pending",
               WebhookDelivery.next_attempt_at <= now)
        .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS),
                attempts=WebhookDelivery.attempts + 1)
        .execution_options(synchronize_session=False))
    db.session.commit()
    if claimed.rowcount != 1:
        return None
    delivery = db.session.get(WebhookDelivery, delivery_id)
    hook = delivery.hook
    status, error = _post(hook, delivery)
    delivery.last_status, delivery.last_error = status, (error or None) and error[:500]
    if error is None:
        delivery.state, delivery.delivered_at = "delivered", utcnow()
        result = "delivered"
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.state = "failed"
        result = "failed"
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts)
        result = "retrying"
    db.session.commit()
    return result


def _post(hook: Webhook, delivery: WebhookDelivery) -> tuple[Optional[int], Optional[str]]:
    """POST one delivery; (status, None) on a 2xx, else (status or None, the reason)."""
    problems = check_url(hook.url)
    if problems:
        return None, problems[0]
    body = delivery.payload.encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "Gatehouse-Hookshot",
               "X-Gitlab-Event": "Deploy Token Hook", "X-Gatehouse-Event": delivery.event,
               "X-Gatehouse-Delivery": str(delivery.id)}
    if hook.token_encrypted:
        secret = encryption.decrypt(hook.token_encrypted, token_aad(hook.id))
        headers["X-Gitlab-Token"] = secret
        headers["X-Gatehouse-Signature"] = signature(secret, body)
    handlers: list = [_NoRedirect()]
    if hook.url.startswith("https") and not hook.enable_ssl_verification:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            return response.status, None
    except urllib.error.HTTPError as error:
        return error.code, f"HTTP {error.code}"
    except (OSError, ValueError) as error:
        return None, str(error) or type(error).__name__
