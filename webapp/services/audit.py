"""Audit events, written inside the caller's transaction."""
from datetime import datetime
from typing import Any, Optional

import sqlalchemy as sa

from ..extensions import db
from ..models import AuditEvent, User


def record(action: str, target: Any, *, actor: Optional[User], ip: Optional[str],
           **details: Any) -> AuditEvent:
    """Add an audit event to the session; the calling use case commits it."""
    event = AuditEvent(
        actor_id=actor.id if actor else None,
        actor_name=actor.username if actor else "system",
        action=action,
        target_type=type(target).__name__,
        target_id=getattr(target, "id", None),
        details=details,
        ip=ip,
    )
    db.session.add(event)
    return event


# ---------------------------------------------------------------- reading the trail

# What a project's or group's trail holds: events about its deploy tokens and webhooks.
OWNED_TARGETS = ("DeployToken", "Webhook")


def events_query(owner=None, *, token_id: Optional[int] = None,
                 after: Optional[datetime] = None, before: Optional[datetime] = None
                 ) -> sa.Select:
    """Audit events of a project or group (every event when `owner` is None), newest first.

    `token_id` narrows to one deploy token; `after` and `before` bound the time.
    """
    from ..models import DeployToken, Project, Webhook
    query = sa.select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    if owner is not None:
        column = "project_id" if isinstance(owner, Project) else "group_id"
        query = query.where(sa.or_(
            sa.and_(AuditEvent.target_type == "DeployToken", AuditEvent.target_id.in_(
                sa.select(DeployToken.id).where(getattr(DeployToken, column) == owner.id))),
            sa.and_(AuditEvent.target_type == "Webhook", AuditEvent.target_id.in_(
                sa.select(Webhook.id).where(getattr(Webhook, column) == owner.id)))))
    if token_id is not None:
        query = query.where(AuditEvent.target_type == "DeployToken",
                            AuditEvent.target_id == token_id)
    if after is not None:
        query = query.where(AuditEvent.created_at >= after)
    if before is not None:
        query = query.where(AuditEvent.created_at < before)
    return query
