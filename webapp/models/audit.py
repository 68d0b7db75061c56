"""Audit events: who did what to which thing, when and from where."""
from datetime import datetime
from typing import Any, Optional

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .types import UTCDateTime, utcnow


class AuditEvent(db.Model):
    __tablename__ = "audit_events"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow, index=True)
    # Kept as text too, so the record survives if the actor's row ever goes.
    actor_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("users.id"))
    actor_name: so.Mapped[str] = so.mapped_column(sa.String(255))
    action: so.Mapped[str] = so.mapped_column(sa.String(64), index=True)
    target_type: so.Mapped[str] = so.mapped_column(sa.String(64))
    target_id: so.Mapped[Optional[int]] = so.mapped_column()
    details: so.Mapped[dict[str, Any]] = so.mapped_column(sa.JSON, default=dict)
    ip: so.Mapped[Optional[str]] = so.mapped_column(sa.String(64))
