"""Package registry use cases: add files to package versions, find them, npm dist-tags."""
import functools
import hashlib
import re
import zipfile
from datetime import datetime
from typing import Any, Iterable, Optional

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Package, PackageFile, PackageTag, Project, utcnow
from . import accounts, package_storage
from .errors import Forbidden, Invalid, NotFound
from .package_storage import Upload

# GitLab's rules, roughly: no path separators, no leading dot, no "..".
GENERIC_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+~-]{0,254}$")
GENERIC_VERSION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}$")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9._+~@-]{0,254}$")
PYPI_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
PYPI_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]{0,254}$")
NPM_NAME_RE = re.compile(r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")
NPM_VERSION_RE = re.compile(r"^[0-9A-Za-z.+-]{1,255}$")
NPM_TAG_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,254}$")


def end_reads() -> None:
    """End the read transaction and give its pooled connection back.

    Called once a door has decided, before an upload body is read or a file streams:
    a slow client must not hold a connection (or, on PostgreSQL, an idle transaction
    that `idle_in_transaction_session_timeout` kills). Rows already loaded stay
    readable (detached); the write at the end runs in a fresh, short transaction.
    """
    db.session.close()


def normalize_pypi_name(name: str) -> str:
    """PEP 503: lower case, runs of `-`, `_` and `.` become one `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _check(value: str, pattern: re.Pattern, field: str) -> None:
    if not value or not pattern.match(value) or ".." in value:
        raise Invalid({field: [f"{field} is invalid"]})


def check_generic(name: str, version: str, file_name: str) -> None:
    """Raise Invalid unless the generic package coordinates are acceptable."""
    _check(name, GENERIC_NAME_RE, "package_name")
    _check(version, GENERIC_VERSION_RE, "package_version")
    _check(file_name, FILE_NAME_RE, "file_name")


def _package_query(project: Project, package_type: str, name: str):
    return sa.select(Package).where(Package.project_id == project.id,
                                    Package.package_type == package_type, Package.name == name)


def find(project: Project, package_type: str, name: str, version: str) -> Optional[Package]:
    return db.session.scalar(_package_query(project, package_type, name)
                             .where(Package.version == version))


def add_file(project: Project, package_type: str, name: str, version: str, upload: Upload, *,
             file_name: str, unique_file_name: bool = False, requires_python: Optional[str] = None,
             metadata: Optional[dict] = None, before_commit=None) -> PackageFile:
    """Put a received file into a package version, creating the version when new.

    The file reaches its content address before the row is committed; whatever fails
    on the way removes the temp file, and the stored file unless a row uses it.
    """
    try:
        for attempt in range(2):
            try:
                return _add_file(project, package_type, name, version, upload,
                                 file_name=file_name, unique_file_name=unique_file_name,
                                 requires_python=requires_python, metadata=metadata,
                                 before_commit=before_commit)
            except IntegrityError:
                # Another upload created the same version at the same moment: the
                # second attempt finds it and adds the file to it.
                db.session.rollback()
                if attempt:
                    raise
    except BaseException:
        db.session.rollback()
        upload.discard()
        upload.unstore()
        raise


def _add_file(project, package_type, name, version, upload, *, file_name, unique_file_name,
              requires_python, metadata, before_commit) -> PackageFile:
    package = find(project, package_type, name, version)
    if package is None:
        package = Package(project_id=project.id, package_type=package_type, name=name,
                          version=version, metadata_json=metadata)
        db.session.add(package)
    elif unique_file_name and any(f.file_name == file_name for f in package.files):
        raise Invalid({"file_name": ["File name has already been taken"]})
    upload.store()
    row = PackageFile(
        package=package, file_name=file_name, size=upload.size,
        file_sha256=upload.sha256, file_md5=upload.digests.get("md5"),
        file_sha1=upload.digests.get("sha1"), file_sha512=upload.digests.get("sha512"),
        requires_python=requires_python or None)
    db.session.add(row)
    package.updated_at = utcnow()
    if before_commit is not None:
        db.session.flush()
        before_commit(package)
    db.session.commit()
    return row


def latest_file(project: Project, package_type: str, name: str, version: str,
                file_name: str) -> PackageFile:
    """The newest file of that name in the version (re-uploads keep the old ones)."""
    row = newest_file([project], package_type, name, version, file_name)
    if row is None:
        raise NotFound("404 Package Not Found")
    return row


def newest_file(projects: Iterable[Project], package_type: str, name: str, version: str,
                file_name: str) -> Optional[PackageFile]:
    """The newest file of that name in that version across the projects, if any."""
    ids = [p.id for p in projects]
    if not ids:
        return None
    return db.session.scalar(
        sa.select(PackageFile).join(Package)
        .where(Package.project_id.in_(ids), Package.package_type == package_type,
               Package.name == name, Package.version == version,
               PackageFile.file_name == file_name)
        .order_by(PackageFile.id.desc()).limit(1))


def versions_of(projects: Iterable[Project], package_type: str, name: str) -> list[Package]:
    """Every version of the named package across the projects, oldest first."""
    ids = [p.id for p in projects]
    if not ids:
        return []
    return list(db.session.scalars(
        sa.select(Package).where(Package.project_id.in_(ids),
                                 Package.package_type == package_type, Package.name == name)
        .order_by(Package.created_at, Package.id)))


def file_names(projects: Iterable[Project], package_type: str, name: str, version: str
               ) -> list[tuple[str, datetime]]:
    """(file name, created) of every file in that version across the projects."""
    ids = [p.id for p in projects]
    if not ids:
        return []
    return list(db.session.execute(
        sa.select(PackageFile.file_name, PackageFile.created_at).join(Package)
        .where(Package.project_id.in_(ids), Package.package_type == package_type,
               Package.name == name, Package.version == version)
        .order_by(PackageFile.id)))


def has_file(project: Project, package_type: str, name: str, version: str,
             file_name: str) -> bool:
    return newest_file([project], package_type, name, version, file_name) is not None


# Deleting: rows go in one transaction, then the files no remaining row points to.

def delete_packages(rows: Iterable[Package]) -> int:
    """Delete package versions with their files and tags; remove unreferenced files."""
    rows = list(rows)
    digests = {f.file_sha256 for p in rows for f in p.files}
    ids = [p.id for p in rows]
    if not ids:
        return 0
    db.session.execute(sa.delete(PackageTag).where(PackageTag.package_id.in_(ids)))
    db.session.execute(sa.delete(PackageFile).where(PackageFile.package_id.in_(ids)))
    db.session.execute(sa.delete(Package).where(Package.id.in_(ids)))
    db.session.commit()
    for digest in digests:
        if not package_storage.referenced(digest):
            package_storage.content_path(digest).unlink(missing_ok=True)
    return len(ids)


def delete_version(project: Project, package_type: str, name: str, version: str) -> None:
    """Delete one version (npm unpublish name@version, the page's delete button)."""
    package = find(project, package_type, name, version)
    if package is None:
        raise NotFound("404 Package Not Found")
    delete_packages([package])


def delete_package(project: Project, package_type: str, name: str) -> int:
    """Delete every version of a package (npm unpublish of the whole package)."""
    rows = list(db.session.scalars(_package_query(project, package_type, name)))
    if not rows:
        raise NotFound("404 Package Not Found")
    return delete_packages(rows)


def get_in(project: Project, package_id: int) -> Optional[Package]:
    package = db.session.get(Package, package_id)
    return package if package is not None and package.project_id == project.id else None


def delete_by_id(project: Project, package_id: int) -> str:
    """Delete one package version of the project by its id; return its label."""
    package = get_in(project, package_id)
    if package is None:
        raise NotFound("404 Package Not Found")
    label = f"{package.name} {package.version}"
    delete_packages([package])
    return label


def file_by_digest(project: Project, package_type: str, sha256: str, file_name: str
                   ) -> PackageFile:
    row = db.session.scalar(
        sa.select(PackageFile).join(Package)
        .where(Package.project_id == project.id, Package.package_type == package_type,
               PackageFile.file_sha256 == sha256, PackageFile.file_name == file_name)
        .order_by(PackageFile.id.desc()).limit(1))
    if row is None:
        raise NotFound("404 Package Not Found")
    return row


# PyPI

def pypi_names(projects: Iterable[Project]) -> list[str]:
    """Distinct PyPI package names across the projects, sorted."""
    ids = [p.id for p in projects]
    if not ids:
        return []
    return list(db.session.scalars(
        sa.select(Package.name).distinct()
        .where(Package.project_id.in_(ids), Package.package_type == "pypi")
        .order_by(Package.name)))


def pypi_files(projects: Iterable[Project], normalized_name: str) -> list[PackageFile]:
    """Every file of every version of that PyPI package across the projects."""
    ids = [p.id for p in projects]
    if not ids:
        return []
    return list(db.session.scalars(
        sa.select(PackageFile).join(Package)
        .where(Package.project_id.in_(ids), Package.package_type == "pypi",
               Package.name == normalized_name)
        .order_by(Package.id, PackageFile.file_name, PackageFile.id)))


# npm

def npm_versions(project: Project, name: str) -> tuple[list[Package], dict[str, str]]:
    """The package's versions (with files) and its dist-tags; NotFound when it has none."""
    versions = list(db.session.scalars(_package_query(project, "npm", name).order_by(Package.id)))
    if not versions:
        raise NotFound("404 Not found")
    return versions, npm_tags(project, name)


def npm_tags(project: Project, name: str) -> dict[str, str]:
    rows = db.session.execute(
        sa.select(PackageTag.tag, Package.version).join(Package, PackageTag.package_id == Package.id)
        .where(PackageTag.project_id == project.id, PackageTag.package_type == "npm",
               PackageTag.package_name == name).order_by(PackageTag.tag))
    return {tag: version for tag, version in rows}


def npm_source(projects: Iterable[Project], name: str) -> int:
    """The id of the project whose `name` a group or instance registry serves.

    Several projects may hold a package of the same name; the one with the newest
    version wins, so metadata and tarballs always come from one project.
    """
    ids = [p.id for p in projects]
    project_id = db.session.scalar(
        sa.select(Package.project_id).where(Package.project_id.in_(ids or [-1]),
                                            Package.package_type == "npm", Package.name == name)
        .order_by(Package.created_at.desc(), Package.id.desc()).limit(1))
    if project_id is None:
        raise NotFound("404 Not found")
    return project_id


def npm_check_new_version(project: Project, name: str, version: str) -> None:
    """Refuse a version that is already published, before its tarball is read."""
    taken = find(project, "npm", name, version) is not None
    end_reads()  # the body is still streaming
    if taken:
        raise Forbidden(f"Cannot publish over the previously published version {version} "
                        f"of {name}. Bump the version and publish again.")


def npm_deprecate(project: Project, name: str, messages: dict[str, str]) -> int:
    """Set (a message) or clear (an empty one) the deprecation of versions; count changes."""
    versions = {p.version: p for p in db.session.scalars(_package_query(project, "npm", name))}
    if not versions:
        raise NotFound("404 Not found")
    unknown = sorted(set(messages) - set(versions))
    if unknown:
        raise NotFound(f"404 version {unknown[0]} of {name} not found")
    changed = 0
    for version, message in messages.items():
        package = versions[version]
        manifest = dict(package.metadata_json or {})
        if (manifest.get("deprecated") or "") == message:
            continue
        if message:
            manifest["deprecated"] = message
        else:
            manifest.pop("deprecated", None)
        package.metadata_json = manifest  # a new dict: the JSON column sees the change
        changed += 1
    db.session.commit()
    return changed


def npm_unpublish_versions(project: Project, name: str, keep: Iterable[str],
                           tags: dict[str, str]) -> list[str]:
    """Remove the versions not in `keep` (npm's unpublish of name@version); retag."""
    keep = set(keep)
    versions = list(db.session.scalars(_package_query(project, "npm", name)))
    if not versions:
        raise NotFound("404 Not found")
    removed = [p for p in versions if p.version not in keep]
    if len(removed) == len(versions):
        raise Invalid({"versions": ["unpublish the whole package instead of every version"]})
    gone = [p.version for p in removed]
    remaining = {p.version: p for p in versions if p.version in keep}
    if removed:
        delete_packages(removed)
    for tag, version in tags.items():
        if version in remaining and NPM_TAG_RE.match(tag):
            _set_tag(project, name, tag, remaining[version])
    db.session.commit()
    return gone


def npm_publish(project: Project, name: str, version: str, manifest: dict[str, Any],
                upload: Upload, *, file_name: str, tags: dict[str, str]) -> PackageFile:
    """Publish one npm version with its tarball; a version is never published twice."""
    if find(project, "npm", name, version) is not None:
        upload.discard()
        raise Forbidden(f"Cannot publish over the previously published version {version} "
                        f"of {name}. Bump the version and publish again.")
    def tag(package: Package) -> None:
        for tag_name, tagged in tags.items():
            if tagged == version:
                _set_tag(project, name, tag_name, package)

    return add_file(project, "npm", name, version, upload, file_name=file_name,
                    unique_file_name=True, metadata=manifest, before_commit=tag)


def _set_tag(project: Project, name: str, tag: str, package: Package) -> None:
    _check(tag, NPM_TAG_RE, "tag")
    row = db.session.scalar(sa.select(PackageTag).where(
        PackageTag.project_id == project.id, PackageTag.package_type == "npm",
        PackageTag.package_name == name, PackageTag.tag == tag))
    if row is None:
        db.session.add(PackageTag(project_id=project.id, package_type="npm",
                                  package_name=name, tag=tag, package_id=package.id))
    else:
        row.package_id = package.id


def npm_set_tag(project: Project, name: str, tag: str, version: str) -> None:
    """Point a dist-tag at an existing version."""
    package = find(project, "npm", name, version)
    if package is None:
        raise NotFound("404 Package Not Found")
    _set_tag(project, name, tag, package)
    db.session.commit()


def npm_delete_tag(project: Project, name: str, tag: str) -> None:
    row = db.session.scalar(sa.select(PackageTag).where(
        PackageTag.project_id == project.id, PackageTag.package_type == "npm",
        PackageTag.package_name == name, PackageTag.tag == tag))
    if row is None:
        raise NotFound("404 Tag Not Found")
    db.session.delete(row)
    db.session.commit()


def set_maven_duplicates(full_path: str, allowed: bool) -> None:
    """Set whether a Maven release's file may be uploaded again (SNAPSHOTs always may)."""
    project = accounts.find_project(full_path)
    if project is None:
        raise NotFound(f"Project '{full_path}' does not exist")
    project.maven_duplicates_allowed = allowed
    db.session.commit()


# The project's Packages page

def count_for(project: Project) -> int:
    """How many package versions the project has."""
    return db.session.scalar(sa.select(sa.func.count(Package.id))
                             .where(Package.project_id == project.id)) or 0


def page_for(project: Project, page: int, per_page: int) -> tuple[list[Package], int]:
    """One page of the project's package versions, newest first, and the page count."""
    total = count_for(project)
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    rows = list(db.session.scalars(
        sa.select(Package).where(Package.project_id == project.id)
        .order_by(Package.updated_at.desc(), Package.id.desc())
        .offset((page - 1) * per_page).limit(per_page)))
    return rows, pages


# PEP 658 / 714: a wheel's core metadata (its `*.dist-info/METADATA`), served beside the
# wheel so that pip resolves without downloading every candidate. Read from the stored
# wheel itself; files are content-addressed, so what was read once never changes.
METADATA_RE = re.compile(r"^[^/]+\.dist-info/METADATA$")
METADATA_LIMIT = 1024 * 1024


def wheel_metadata(file_sha256: str, file_name: str) -> Optional[bytes]:
    """The wheel's METADATA file, or None (not a wheel, no single METADATA, too large)."""
    if not file_name.endswith(".whl"):
        return None
    try:
        with zipfile.ZipFile(package_storage.content_path(file_sha256)) as wheel:
            found = [i for i in wheel.infolist() if METADATA_RE.match(i.filename)]
            if len(found) != 1 or found[0].file_size > METADATA_LIMIT:
                return None
            return wheel.read(found[0])
    except (OSError, zipfile.BadZipFile, KeyError, RuntimeError):
        return None


@functools.lru_cache(maxsize=4096)
def wheel_metadata_sha256(file_sha256: str, file_name: str) -> Optional[str]:
    """The SHA-256 of the wheel's METADATA, for the index; None when there is none."""
    data = wheel_metadata(file_sha256, file_name)
    return hashlib.sha256(data).hexdigest() if data is not None else None
