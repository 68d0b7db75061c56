"""People and places: users, nested groups, projects and memberships."""
import enum
from datetime import datetime
from typing import Optional

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from .types import UTCDateTime, utcnow


class AccessLevel(enum.IntEnum):
    """GitLab's membership levels; higher includes lower."""

    GUEST = 10
    REPORTER = 20
    DEVELOPER = 30
    MAINTAINER = 40
    OWNER = 50

    @property
    def label(self) -> str:
        return self.name.capitalize()


class Visibility(str, enum.Enum):
    PRIVATE = "private"
    INTERNAL = "internal"
    PUBLIC = "public"


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    username: so.Mapped[str] = so.mapped_column(sa.String(255), unique=True)
    email: so.Mapped[str] = so.mapped_column(sa.String(255), unique=True)
    password_hash: so.Mapped[str] = so.mapped_column(sa.String(255))
    is_admin: so.Mapped[bool] = so.mapped_column(default=False)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    # Wrong passwords in a row; at ACCOUNT_LOCK_ATTEMPTS password sign-in is refused until
    # locked_until (GitLab's account lock). Tokens are not affected.
    failed_attempts: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    locked_until: so.Mapped[Optional[datetime]] = so.mapped_column(UTCDateTime)
    # Part of the id every browser session carries (get_id): bumping it ends them all.
    session_generation: so.Mapped[int] = so.mapped_column(default=0, server_default="0")

    def set_password(self, password: str, method: str = "scrypt") -> None:
        self.password_hash = generate_password_hash(password, method=method)
        self.end_sessions()

    def end_sessions(self) -> None:
        """Make every existing browser session of this user invalid (not committed)."""
        self.session_generation = (self.session_generation or 0) + 1

    def get_id(self) -> str:
        # Flask-Login keeps this in the session: "<id>:<generation>", so a session made
        # before the last sign-out or password change no longer loads its user.
        return f"{self.id}:{self.session_generation or 0}"

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def __repr__(self) -> str:
        return f"<User {self.username}>"


class Group(db.Model):
    __tablename__ = "groups"
    __table_args__ = (
        sa.UniqueConstraint("parent_id", "path", name="uq_groups_parent_path"),
        # One path per place, ignoring case (registry names are lower case).
        sa.Index("uq_groups_full_path_lower", sa.func.lower(sa.text("full_path")), unique=True),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(255))
    path: so.Mapped[str] = so.mapped_column(sa.String(255))
    # Denormalised for lookups by URL; groups are never moved (out of scope).
    full_path: so.Mapped[str] = so.mapped_column(sa.String(1024), unique=True)
    parent_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("groups.id"), index=True)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)

    parent: so.Mapped[Optional["Group"]] = so.relationship(remote_side=[id], back_populates="children")
    children: so.Mapped[list["Group"]] = so.relationship(back_populates="parent", order_by="Group.path")
    projects: so.Mapped[list["Project"]] = so.relationship(back_populates="group", order_by="Project.path")

    def ancestors(self) -> list["Group"]:
        """Return this group and its ancestors, nearest first."""
        chain, node = [], self
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain

    def is_self_or_descendant_of(self, other_id: int) -> bool:
        return any(g.id == other_id for g in self.ancestors())

    def __repr__(self) -> str:
        return f"<Group {self.full_path}>"


class Project(db.Model):
    __tablename__ = "projects"
    __table_args__ = (
        sa.UniqueConstraint("group_id", "path", name="uq_projects_group_path"),
        sa.Index("uq_projects_full_path_lower", sa.func.lower(sa.text("full_path")), unique=True),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(255))
    path: so.Mapped[str] = so.mapped_column(sa.String(255))
    full_path: so.Mapped[str] = so.mapped_column(sa.String(1024), unique=True)
    group_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("groups.id"), index=True)
    visibility: so.Mapped[str] = so.mapped_column(sa.String(16), default=Visibility.PRIVATE.value)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    # GitLab's "Allow duplicates" for Maven: a release's file may be uploaded again.
    maven_duplicates_allowed: so.Mapped[bool] = so.mapped_column(
        default=True, server_default=sa.true())

    group: so.Mapped[Group] = so.relationship(back_populates="projects")

    @property
    def is_public(self) -> bool:
        return self.visibility == Visibility.PUBLIC.value

    def __repr__(self) -> str:
        return f"<Project {self.full_path}>"


class Route(db.Model):
    """Every group's and every project's full path, in one table, unique ignoring case.

    Groups and projects are each unique within their own table; only this table makes a
    path that is both a group and a project impossible, even when two creates race
    (GitLab keeps such a `routes` table too). Paths never change: groups and projects are
    neither moved nor renamed here.
    """

    __tablename__ = "routes"
    __table_args__ = (
        sa.CheckConstraint("(group_id IS NULL) <> (project_id IS NULL)", name="one_source"),
        sa.Index("uq_routes_path_lower", sa.func.lower(sa.text("path")), unique=True),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    path: so.Mapped[str] = so.mapped_column(sa.String(1024))
    group_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("groups.id"), unique=True)
    project_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("projects.id"),
                                                            unique=True)

    group: so.Mapped[Optional[Group]] = so.relationship()
    project: so.Mapped[Optional[Project]] = so.relationship()

    def __repr__(self) -> str:
        return f"<Route {self.path}>"


class Membership(db.Model):
    """A user's access level on exactly one group or one project."""

    __tablename__ = "memberships"
    __table_args__ = (
        sa.CheckConstraint("(group_id IS NULL) <> (project_id IS NULL)", name="one_target"),
        sa.UniqueConstraint("user_id", "group_id", "project_id", name="uq_memberships_target"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id"), index=True)
    group_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("groups.id"), index=True)
    project_id: so.Mapped[Optional[int]] = so.mapped_column(sa.ForeignKey("projects.id"), index=True)
    access_level: so.Mapped[int] = so.mapped_column()

    user: so.Mapped[User] = so.relationship()
    group: so.Mapped[Optional[Group]] = so.relationship()
    project: so.Mapped[Optional[Project]] = so.relationship()
