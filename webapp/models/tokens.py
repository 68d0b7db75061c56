"""What every secret-token table shares: the digest, expiry, revocation and last use."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
import sqlalchemy.orm as so

from .types import UTCDateTime, utcnow


class SecretToken:
    """Columns and properties of a token whose secret is shown once and kept as a digest.

    Scopes are stored the same way for every kind: comma-separated names, in the order of
    the kind's scope list (services/token_kinds.py).
    """

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    # SHA-256 of the secret, hex; the secret itself is never stored.
    token_digest: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    scope_names: so.Mapped[str] = so.mapped_column("scopes", sa.String(255), default="")
    expires_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    revoked: so.Mapped[bool] = so.mapped_column(default=False)
    revoked_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    last_used_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    last_used_ip: so.Mapped[Optional[str]] = so.mapped_column(sa.String(64))

    @property
    def scopes(self) -> list[str]:
        return [s for s in (self.scope_names or "").split(",") if s]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def expired_at(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def active_at(self, now: datetime) -> bool:
        return not self.revoked and not self.expired_at(now)

    @property
    def label(self) -> str:
        return self.name

    @property
    def active(self) -> bool:
        return self.active_at(utcnow())
