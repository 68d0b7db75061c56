"""Expiry warnings already decided: one row per token and threshold, never two."""
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .types import UTCDateTime, utcnow


class ExpiryNotification(db.Model):
    __tablename__ = "expiry_notifications"
    __table_args__ = (
        # The row is the decision: whoever inserts it sends the mail, in the same transaction.
        # The expiry is part of the key: a token given a new expiry is warned again.
        sa.UniqueConstraint("token_kind", "token_id", "expires_at", "threshold_days",
                            name="uq_expiry_notifications_token_threshold"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    token_kind: so.Mapped[str] = so.mapped_column(sa.String(64))
    token_id: so.Mapped[int] = so.mapped_column()
    expires_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime)
    threshold_days: so.Mapped[int] = so.mapped_column()
    recipients: so.Mapped[int] = so.mapped_column(default=0)
    sent_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
