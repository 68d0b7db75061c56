"""Audit events, written inside the caller's transaction."""
from typing import Any, Optional

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
