"""Container image repositories: a stable id per registry repository name, for the API."""
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .accounts import Project
from .types import UTCDateTime, utcnow


class ContainerRepository(db.Model):
    """A repository the registry's catalog lists under a project (the registry holds the rest)."""

    __tablename__ = "container_repositories"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    project_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("projects.id"), index=True)
    # The registry's full name, lower case: `tanuki/awesome_project` or `…/app`.
    name: so.Mapped[str] = so.mapped_column(sa.String(255), unique=True)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)

    project: so.Mapped[Project] = so.relationship()

    @property
    def image_name(self) -> str:
        """The part after the project's path ("" for the project's own image)."""
        prefix = self.project.full_path.lower()
        return "" if self.name == prefix else self.name[len(prefix) + 1:]
