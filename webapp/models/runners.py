"""Runner tokens: how a CI runner of one project proves itself to /ci/variables."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .accounts import Project, User
from .types import UTCDateTime, utcnow


class RunnerToken(db.Model):
    __tablename__ = "runner_tokens"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    project_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("projects.id"), index=True)
    description: so.Mapped[str] = so.mapped_column(sa.String(255), default="")
    # SHA-256 of the secret, hex; the secret itself is shown once and never stored.
    token_digest: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    revoked: so.Mapped[bool] = so.mapped_column(default=False)
    revoked_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    creator_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("users.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    last_used_at: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    last_used_ip: so.Mapped[Optional[str]] = so.mapped_column(sa.String(64))

    project: so.Mapped[Project] = so.relationship()
    creator: so.Mapped[Optional[User]] = so.relationship()

    @property
    def active(self) -> bool:
        return not self.revoked

    @property
    def label(self) -> str:
        return self.description or f"Runner #{self.id}"

    def __repr__(self) -> str:
        return f"<RunnerToken {self.id} project={self.project_id}>"
