"""Failed-authentication counters per client IP, for the database ban backend."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .types import UTCDateTime


class AuthFailure(db.Model):
    __tablename__ = "auth_failures"

    # An IPv6 address with a zone id fits comfortably in 64 characters.
    ip: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    failures: so.Mapped[int] = so.mapped_column(default=0)
    window_started_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime)
    banned_until: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime, index=True)
