"""Packages: a name and version per project and type, files stored by content address."""
from datetime import datetime
from typing import Any, Optional

import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .accounts import Project
from .types import UTCDateTime, utcnow

PACKAGE_TYPES = ("generic", "pypi", "npm", "maven")


class Package(db.Model):
    __tablename__ = "packages"
    __table_args__ = (
        sa.UniqueConstraint("project_id", "package_type", "name", "version",
                            name="uq_packages_identity"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    project_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("projects.id"), index=True)
    package_type: so.Mapped[str] = so.mapped_column(sa.String(16))
    # PyPI names are stored normalised (PEP 503), npm names with their scope.
    name: so.Mapped[str] = so.mapped_column(sa.String(255))
    version: so.Mapped[str] = so.mapped_column(sa.String(255))
    # npm: the version's manifest as published; PyPI: summary and the like.
    metadata_json: so.Mapped[Optional[dict[str, Any]]] = so.mapped_column(sa.JSON)
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)
    updated_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)

    project: so.Mapped[Project] = so.relationship()
    files: so.Mapped[list["PackageFile"]] = so.relationship(
        back_populates="package", order_by="PackageFile.id")

    def __repr__(self) -> str:
        return f"<Package {self.package_type} {self.name} {self.version}>"


class PackageFile(db.Model):
    __tablename__ = "package_files"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    package_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("packages.id"), index=True)
    file_name: so.Mapped[str] = so.mapped_column(sa.String(255))
    size: so.Mapped[int] = so.mapped_column(sa.BigInteger)
    # The content address: the file lives at DATA_DIR/packages/sha256/ab/cd/<sha256>.
    file_sha256: so.Mapped[str] = so.mapped_column(sa.String(64), index=True)
    file_md5: so.Mapped[Optional[str]] = so.mapped_column(sa.String(32))
    file_sha1: so.Mapped[Optional[str]] = so.mapped_column(sa.String(40))
    file_sha512: so.Mapped[Optional[str]] = so.mapped_column(sa.String(128))
    requires_python: so.Mapped[Optional[str]] = so.mapped_column(sa.String(255))
    created_at: so.Mapped[datetime] = so.mapped_column(UTCDateTime, default=utcnow)

    package: so.Mapped[Package] = so.relationship(back_populates="files")

    def __repr__(self) -> str:
        return f"<PackageFile {self.file_name} {self.file_sha256[:12]}>"


class PackageTag(db.Model):
    """An npm dist-tag: `latest`, `beta`... pointing at one version of a package name."""

    __tablename__ = "package_tags"
    __table_args__ = (
        sa.UniqueConstraint("project_id", "package_type", "package_name", "tag",
                            name="uq_package_tags_identity"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    project_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("projects.id"), index=True)
    package_type: so.Mapped[str] = so.mapped_column(sa.String(16))
    package_name: so.Mapped[str] = so.mapped_column(sa.String(255))
    tag: so.Mapped[str] = so.mapped_column(sa.String(255))
    package_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("packages.id"), index=True)

    package: so.Mapped[Package] = so.relationship()
