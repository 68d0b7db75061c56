"""Deploy tokens: a digest of the secret, scopes, expiry and an owner."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .accounts import Group, Project, User
from .tokens import SecretToken
from .types import UTCDateTime

# Scope name → the description GitLab shows beside its checkbox.
SCOPES = {
    "read_repository": "Allows read-access to the repository through git clone",
    "read_registry": "Allows read-access to container registry images if a project is "
                     "private and authorization is required.",
    "write_registry": "Allows write-access (push) to container registry.",
    "read_package_registry": "Allows read access to the package registry.",
    "write_package_registry": "Allows write access to the package registry.",
}


class DeployToken(SecretToken, db.Model):
    __tablename__ = "deploy_tokens"
    __table_args__ = (
        sa.CheckConstraint("(group_id IS NULL) <> (project_id IS NULL)", name="one_owner"),
    )

    name: so.Mapped[str] = so.mapped_column(sa.String(255))
    # NULL means the default, gitlab+deploy-token-{id}, which needs the id first.
    custom_username: so.Mapped[Optional[str]] = so.mapped_column("username", sa.String(255))
    # Only the project token named gitlab-deploy-token, whose secret CI hands to jobs,
    # keeps it recoverable: AES-256-GCM (services/encryption.py). Every other: NULL.
    token_encrypted: so.Mapped[Optional[str]] = so.mapped_column(sa.Text)
    project_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("projects.id"), index=True)
    group_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("groups.id"), index=True)
    creator_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("users.id"))
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
    def owner(self):
        return self.project or self.group

    def __repr__(self) -> str:
        return f"<DeployToken {self.id} {self.name}>"
