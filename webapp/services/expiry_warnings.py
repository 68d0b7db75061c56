"""Expiry warnings: mail the people who can rotate a token before it stops working.

A deploy token warns the Maintainers and Owners of its project or group (including
those who have the role through a parent group); a personal access token warns its
owner. Each token is warned once per threshold (30, 7 and 1 days by default,
GATEHOUSE_EXPIRY_WARNING_DAYS); a token already past several thresholds when first seen
gets one mail, for the nearest.

Safe to run from cron on several hosts at once: the decision to warn is a row, unique
per token, expiry and threshold, inserted in the transaction that sends the mail. A
concurrent pass waits on that row and then finds it taken; a pass whose mail fails
rolls back, so the next pass tries again.
"""
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional, Union

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import (AccessLevel, DeployToken, ExpiryNotification, Group, Membership,
                      PersonalAccessToken, Project, User, utcnow)
from . import mail, webhooks
from .deploy_tokens import DEPLOY_TOKENS
from .personal_access_tokens import PERSONAL_ACCESS_TOKENS
from .secret_tokens import TokenKind

WARNED_KINDS = (DEPLOY_TOKENS, PERSONAL_ACCESS_TOKENS)


@dataclass
class Summary:
    tokens: int = 0   # warnings decided by this pass
    mails: int = 0    # messages sent (or logged, without SMTP)
    failed: int = 0   # warnings whose mail failed; the next pass retries them


def thresholds() -> list[int]:
    """The configured thresholds in days, largest first (a list, or "30,7,1")."""
    raw = current_app.config["EXPIRY_WARNING_DAYS"]
    values = raw.split(",") if isinstance(raw, str) else raw
    days = sorted({int(v) for v in values if str(v).strip()}, reverse=True)
    if not days or days[-1] < 1:
        raise ValueError("GATEHOUSE_EXPIRY_WARNING_DAYS must be whole days, 1 or more")
    return days


def due_threshold(expires_at: datetime, now: datetime, days: list[int]) -> Optional[int]:
    """The nearest threshold the token has passed, or None (not yet, or already expired)."""
    left = expires_at - now
    if left <= timedelta(0):
        return None
    passed = [d for d in days if left <= timedelta(days=d)]
    return min(passed) if passed else None


def maintainers(owner: Union[Project, Group]) -> list[User]:
    """Maintainers and Owners of a project or group, directly or through a parent group."""
    groups = owner.group.ancestors() if isinstance(owner, Project) else owner.ancestors()
    where = Membership.group_id.in_([g.id for g in groups])
    if isinstance(owner, Project):
        where = sa.or_(where, Membership.project_id == owner.id)
    return list(db.session.scalars(
        sa.select(User).where(User.id.in_(
            sa.select(Membership.user_id).where(
                where, Membership.access_level >= AccessLevel.MAINTAINER.value)))
        .order_by(User.id)))


def run(*, now: Optional[datetime] = None) -> Summary:
    """One pass over every token that expires within the largest threshold."""
    now = now or utcnow()
    days = thresholds()
    horizon = now + timedelta(days=days[0])
    due = []
    for kind in WARNED_KINDS:
        query = kind.select(active=True, now=now).where(
            kind.model.expires_at.is_not(None), kind.model.expires_at <= horizon)
        for token in db.session.scalars(query):
            threshold = due_threshold(token.expires_at, now, days)
            if threshold is not None:
                due.append((kind, token.id, token.expires_at, threshold))
    # Deploy tokens that expired lately: their webhooks hear it once (threshold 0, no mail).
    expired = db.session.execute(
        DEPLOY_TOKENS.select().with_only_columns(DeployToken.id, DeployToken.expires_at).where(
            DeployToken.revoked.is_(False), DeployToken.expires_at <= now,
            DeployToken.expires_at > now - timedelta(days=days[0]))).all()
    db.session.rollback()  # end the read: each decision below is its own write transaction
    summary = Summary()
    for kind, token_id, expires_at, threshold in due:
        _warn(kind, token_id, expires_at, threshold, now, summary)
    for token_id, expires_at in expired:
        if _decide(DEPLOY_TOKENS, token_id, expires_at, 0, now):
            webhooks.enqueue("deploy_token_expired", db.session.get(DeployToken, token_id),
                             now=now)
            db.session.commit()
    return summary


def _decide(kind: TokenKind, token_id: int, expires_at: datetime, threshold: int,
            now: datetime) -> bool:
    """Insert the decision's row; False (and nothing left open) when it exists already."""
    insert = _dialect_insert()(ExpiryNotification).values(
        token_kind=kind.key, token_id=token_id, expires_at=expires_at,
        threshold_days=threshold, recipients=0, sent_at=now,
    ).on_conflict_do_nothing().returning(ExpiryNotification.id)
    # RETURNING, not rowcount: the ORM's insert reports no rowcount on PostgreSQL.
    if db.session.execute(insert).first() is None:
        db.session.rollback()  # another pass (or an earlier one) decided already
        return False
    return True


def _warn(kind: TokenKind, token_id: int, expires_at: datetime, threshold: int,
          now: datetime, summary: Summary) -> None:
    """Decide (insert the row) and send in one transaction; a concurrent pass skips."""
    if not _decide(kind, token_id, expires_at, threshold, now):
        return
    token = db.session.get(kind.model, token_id)
    if token is None or not token.active_at(now) or token.expires_at != expires_at:
        db.session.rollback()  # changed since it was read: the next pass sees it anew
        return
    if isinstance(token, DeployToken):
        webhooks.enqueue("deploy_token_expiring", token, now=now)  # queued with the decision
    messages = [mail.message(user.email, *_text(kind, token, now)) for user in _recipients(token)]
    try:
        sent = mail.send(messages)
    except mail.MailError as error:
        db.session.rollback()
        summary.failed += 1
        current_app.logger.error("Expiry warning for %s %s not sent: %s", kind.key, token_id,
                                 error)
        return
    db.session.execute(sa.update(ExpiryNotification).where(
        ExpiryNotification.token_kind == kind.key, ExpiryNotification.token_id == token_id,
        ExpiryNotification.expires_at == expires_at,
        ExpiryNotification.threshold_days == threshold).values(recipients=sent))
    db.session.commit()
    summary.tokens += 1
    summary.mails += sent


def _recipients(token) -> list[User]:
    if isinstance(token, PersonalAccessToken):
        return [token.user]
    return maintainers(token.owner)


def _text(kind: TokenKind, token, now: datetime) -> tuple[str, str]:
    """Subject and body: the token, its scopes, its last use and how to rotate it."""
    left = math.ceil((token.expires_at - now) / timedelta(days=1))
    when = "tomorrow" if left <= 1 else f"in {left} days"
    external = current_app.config["EXTERNAL_URL"]
    if isinstance(token, DeployToken):
        owner = token.owner
        where = f"{'project' if isinstance(owner, Project) else 'group'} {owner.full_path}"
        page = (f"{external}/{owner.full_path}/-/settings/repository#deploy-tokens"
                if isinstance(owner, Project) else
                f"{external}/groups/{owner.full_path}/-/settings/repository#deploy-tokens")
        api = (f"POST {external}/api/v4/{'projects' if isinstance(owner, Project) else 'groups'}"
               f"/{owner.id}/deploy_tokens/{token.id}/rotate")
        subject = f"Deploy token {token.name} of {owner.full_path} expires {when}"
        name = f"Deploy token: {token.name} (username {token.username}) of the {where}"
    else:
        page = f"{external}/-/user_settings/personal_access_tokens"
        api = f"POST {external}/api/v4/personal_access_tokens/{token.id}/rotate"
        subject = f"Your personal access token {token.name} expires {when}"
        name = f"Personal access token: {token.name}"
    last_use = "never used"
    if token.last_used_at is not None:
        last_use = token.last_used_at.strftime("%Y-%m-%d %H:%M UTC")
        if token.last_used_ip:
            last_use += f" from {token.last_used_ip}"
    body = "\n".join([
        f"{name}",
        f"Scopes: {', '.join(token.scopes) or 'none'}",
        f"Expires: {token.expires_at.strftime('%Y-%m-%d %H:%M UTC')} ({when})",
        f"Last used: {last_use}",
        "",
        "Rotate it before then to keep its clients working: rotation gives it a new secret",
        "and keeps the current one valid for a grace period (24 hours by default).",
        f"  In the browser: {page}",
        f"  With the API:   {api}",
        "",
        "You get this mail because you can manage this token. Gatehouse",
    ])
    return subject, body


def _dialect_insert():
    name = db.session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert
