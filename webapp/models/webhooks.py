"""Webhooks of a project or group, and the queue of their deliveries."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .accounts import Group, Project
from .types import UTCDateTime, utcnow


class Webhook(db.Model):
    __tablename__ = "webhooks"
    __table_args__ = (
        sa.CheckConstraint("(group_id IS NULL) <> (project_id IS NULL)", name="one_owner"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    project_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("projects.id"), index=True)
    group_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("groups.id"), index=True)
    url: so.Mapped[str] = so.mapped_column(sa.String(2048))
    # Sent back as X-Gitlab-Token and the HMAC key, so recoverable: AES-256-GCM.
    token_encrypted: so.Mapped[Optional[str]] = so.mapped_column(sa.Text)
    deploy_token_events: so.Mapped[bool] = so.mapped_column(default=True)
    enable_ssl_verification: so.Mapped[bool] = so.mapped_column(default=True)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)

    project: so.Mapped[Optional[Project]] = so.relationship()
    group: so.Mapped[Optional[Group]] = so.relationship()

    @property
    def owner(self):
        return self.project or self.group


class WebhookDelivery(db.Model):
    """One event for one hook: pending until delivered, retried with backoff, kept after."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    hook_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("webhooks.id", ondelete="CASCADE"),
                                               index=True)
    event: so.Mapped[str] = so.mapped_column(sa.String(64))
    payload: so.Mapped[str] = so.mapped_column(sa.Text)  # the exact JSON body that is signed
    state: so.Mapped[str] = so.mapped_column(sa.String(16), default="pending")
    attempts: so.Mapped[int] = so.mapped_column(default=0)
    next_attempt_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    last_status: so.Mapped[Optional[int]] = so.mapped_column()
    last_error: so.Mapped[Optional[str]] = so.mapped_column(sa.String(500))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    delivered_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)

    hook: so.Mapped[Webhook] = so.relationship()
