"""Deploy tokens: a digest of the secret, scopes, expiry and an owner."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .accounts import Group, Project, User
from .types import UTCDateTime, utcnow

# Scope name → the description GitLab shows beside its checkbox.
SCOPES = {
    "read_repository": "Allows read-access to the repository through git clone",
    "read_registry": "Allows read-access to container registry images if a project is "
                     "private and authorization is required.",
    "write_registry": "Allows write-access (push) to container registry.",
    "read_package_registry": "Allows read access to the package registry.",
    "write_package_registry": "Allows write access to the package registry.",
}


class DeployToken(db.Model):
    __tablename__ = "deploy_tokens"
    __table_args__ = (
        sa.CheckConstraint("(group_id IS NULL) <> (project_id IS NULL)", name="one_owner"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(255))
    # NULL means the default, gitlab+deploy-token-{id}, which needs the id first.
    custom_username: so.Mapped[Optional[str]] = so.mapped_column("username", sa.String(255))
    token_digest: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    # Only the project token named gitlab-deploy-token, whose secret CI hands to jobs,
    # keeps it recoverable: AES-256-GCM (services/encryption.py). Every other: NULL.
    token_encrypted: so.Mapped[Optional[str]] = so.mapped_column(sa.Text)
    read_repository: so.Mapped[bool] = so.mapped_column(default=False)
    read_registry: so.Mapped[bool] = so.mapped_column(default=False)
    write_registry: so.Mapped[bool] = so.mapped_column(default=False)
    read_package_registry: so.Mapped[bool] = so.mapped_column(default=False)
    write_package_registry: so.Mapped[bool] = so.mapped_column(default=False)
    expires_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    revoked: so.Mapped[bool] = so.mapped_column(default=False)
    revoked_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    project_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("projects.id"), index=True)
    group_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("groups.id"), index=True)
    creator_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("users.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    last_used_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    last_used_ip: so.Mapped[Optional[str]] = so.mapped_column(sa.String(64))
    # Set when the token is deleted through the API: GitLab destroys the row, we keep it
    # (revoked and hidden from every listing) so that its audit trail still resolves.
    deleted_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)

    project: so.Mapped[Optional[Project]] = so.relationship()
    group: so.Mapped[Optional[Group]] = so.relationship()
    creator: so.Mapped[Optional[User]] = so.relationship()

    @property
    def username(self) -> str:
        return self.custom_username or f"gitlab+deploy-token-{self.id}"

    @property
    def scopes(self) -> list[str]:
        return [s for s in SCOPES if getattr(self, s)]

    def has_scope(self, scope: str) -> bool:
        return scope in SCOPES and bool(getattr(self, scope))

    def expired_at(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def active_at(self, now: datetime) -> bool:
        return not self.revoked and not self.expired_at(now)

    @property
    def owner(self):
        return self.project or self.group

    def __repr__(self) -> str:
        return f"<DeployToken {self.id} {self.name}>"
