"""One-time forms: a create form submitted twice makes one token."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .types import UTCDateTime, utcnow


class FormSubmission(db.Model):
    __tablename__ = "form_submissions"

    # SHA-256 of the form's one-time token: the primary key makes a second submit collide.
    digest: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow, index=True)
    # What the first submit showed (a new secret), AES-GCM sealed, for a repeat of the same
    # submit within a minute; cleared when read or stale.
    result_encrypted: so.Mapped[Optional[str]] = so.mapped_column(sa.Text)
