"""Git LFS: objects stored once by content, linked to each project that holds them, and locks."""
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .accounts import Project, User
from .types import UTCDateTime, utcnow


class LfsObject(db.Model):
    """One stored object; its bytes live at the content address of its oid (SHA-256)."""

    __tablename__ = "lfs_objects"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    oid: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    size: so.Mapped[int] = so.mapped_column(sa.BigInteger)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)


class LfsObjectProject(db.Model):
    """A project may read an object only through one of these: it uploaded the bytes."""

    __tablename__ = "lfs_objects_projects"
    __table_args__ = (sa.UniqueConstraint("lfs_object_id", "project_id",
                                          name="uq_lfs_objects_projects_link"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    lfs_object_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("lfs_objects.id"), index=True)
    project_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("projects.id"), index=True)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)

    lfs_object: so.Mapped[LfsObject] = so.relationship()


class LfsLock(db.Model):
    """A file locked by a user (`git lfs lock`), one per path and project."""

    __tablename__ = "lfs_locks"
    __table_args__ = (sa.UniqueConstraint("project_id", "path", name="uq_lfs_locks_path"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    project_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("projects.id"), index=True)
    path: so.Mapped[str] = so.mapped_column(sa.String(1024))
    ref: so.Mapped[str | None] = so.mapped_column(sa.String(1024))
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id"), index=True)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)

    user: so.Mapped[User] = so.relationship()
    project: so.Mapped[Project] = so.relationship()
