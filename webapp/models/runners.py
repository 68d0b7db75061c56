"""Runner tokens: how a CI runner of one project proves itself to /ci/variables."""
from typing import Optional

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .accounts import Project, User
from .tokens import SecretToken


class RunnerToken(SecretToken, db.Model):
    __tablename__ = "runner_tokens"

    project_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("projects.id"), index=True)
    description: so.Mapped[str] = so.mapped_column(sa.String(255), default="")
    creator_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("users.id"))

    project: so.Mapped[Project] = so.relationship()
    creator: so.Mapped[Optional[User]] = so.relationship()

    @property
    def name(self) -> str:
        return self.description

    @property
    def label(self) -> str:
        return self.description or f"Runner #{self.id}"

    @property
    def owner(self) -> Project:
        return self.project

    def __repr__(self) -> str:
        return f"<RunnerToken {self.id} project={self.project_id}>"
