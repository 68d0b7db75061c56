"""Personal access tokens: a user's credential for the REST API."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .accounts import User
from .types import UTCDateTime, utcnow

# Scope name → the description shown beside its checkbox.
PAT_SCOPES = {
    "api": "Grants complete read and write access to the API.",
    "read_api": "Grants read access to the API.",
}


class PersonalAccessToken(db.Model):
    __tablename__ = "personal_access_tokens"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id"), index=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(255))
    token_digest: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    # Comma-separated scope names, in PAT_SCOPES order.
    scope_names: so.Mapped[str] = so.mapped_column("scopes", sa.String(255))
    expires_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    revoked: so.Mapped[bool] = so.mapped_column(default=False)
    revoked_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    last_used_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    last_used_ip: so.Mapped[Optional[str]] = so.mapped_column(sa.String(64))

    user: so.Mapped[User] = so.relationship()

    @property
    def scopes(self) -> list[str]:
        return [s for s in self.scope_names.split(",") if s]

    def expired_at(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def active_at(self, now: datetime) -> bool:
        return not self.revoked and not self.expired_at(now)

    def __repr__(self) -> str:
        return f"<PersonalAccessToken {self.id} {self.name}>"
