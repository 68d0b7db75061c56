"""What every secret-token table shares: the digest, expiry, revocation, rotation, the
address allowlist and last use."""
import ipaddress
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
    # After a rotation the previous secret keeps working until previous_expires_at, so
    # the clients holding it can be moved over without downtime.
    previous_token_digest: so.Mapped[Optional[str]] = so.mapped_column(sa.String(64), unique=True)
    previous_expires_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    # Comma-separated networks (CIDR, normalised) the token may be used from; NULL: any.
    allowed_ips: so.Mapped[Optional[str]] = so.mapped_column(sa.Text)

    @property
    def scopes(self) -> list[str]:
        return [s for s in (self.scope_names or "").split(",") if s]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def expired_at(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def active_at(self, now: datetime) -> bool:
        return not self.revoked and not self.expired_at(now)

    def in_grace_at(self, now: datetime) -> bool:
        """Whether the secret before the last rotation still works."""
        return (self.previous_token_digest is not None and self.previous_expires_at is not None
                and now < self.previous_expires_at)

    @property
    def allowed_networks(self) -> list[str]:
        return [n for n in (self.allowed_ips or "").split(",") if n]

    def allows_address(self, ip: Optional[str]) -> bool:
        """Whether a request from `ip` may use this token (no allowlist: from anywhere)."""
        networks = self.allowed_networks
        if not networks:
            return True
        try:
            address = ipaddress.ip_address(ip or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in ipaddress.ip_network(n) for n in networks)

    @property
    def label(self) -> str:
        return self.name

    @property
    def active(self) -> bool:
        return self.active_at(utcnow())
