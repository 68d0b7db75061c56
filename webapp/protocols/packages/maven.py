"""Maven: a repository layout at GitLab's project, group and instance URLs.

A Maven repository is a tree of files: `<groupId as path>/<artifactId>/<version>/<file>`
plus `maven-metadata.xml` beside the versions (and, for a SNAPSHOT, inside it) and a
checksum file (`.md5`, `.sha1`, `.sha256`, `.sha512`) beside every file. `mvn deploy`
PUTs each artifact, then its checksums, then its own metadata; resolving GETs the
metadata, the artifact and a checksum. Here a package is `groupId/artifactId` (GitLab's
`com/example/app` form) at one version; its files are the jars, poms and classifiers.
Checksums and metadata are never stored: checksum uploads are verified against the
stored file, checksum downloads are computed from the digests kept with it, and
`maven-metadata.xml` is generated from the versions and files there are.
"""
import hashlib
import hmac
import re
from datetime import datetime
from typing import NoReturn, Optional
from xml.sax.saxutils import escape

from flask import Response, abort

from ...models import Project
from ...services import package_storage, packages
from ...services.errors import Invalid
from ...services.policy import Action
from .. import spool
from .common import (PackageFormat, body_errors, bp, challenge_headers, group_for, instance_for,
                     project_for, receive_body, send_package_file)


def maven_error(status: int, message: str, **headers) -> NoReturn:
    """Plain text, with the reason in the status line too: mvn prints only that line."""
    phrase = re.sub(r"[^\x20-\x7e]", " ", message)[:200].strip() or "Error"
    response = Response(message + "\n", mimetype="text/plain")
    response.status = f"{status} {phrase}"
    response.headers.update(headers)
    response.headers["Cache-Control"] = "no-store"
    abort(response)


# GitLab's Maven doors take the token headers a settings.xml <httpHeaders> sends and
# basic auth (<server><username>/<password>): the packages' door. Job-Token is refused.
FORMAT = PackageFormat("maven", error=maven_error)

PROJECT = "/api/v4/projects/<path:ref>/packages/maven/<path:path>"
GROUP = "/api/v4/groups/<path:ref>/-/packages/maven/<path:path>"
INSTANCE = "/api/v4/packages/maven/<path:path>"

SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}$")
CHECKSUMS = {".md5": "md5", ".sha1": "sha1", ".sha256": "sha256", ".sha512": "sha512"}
METADATA = "maven-metadata.xml"
SNAPSHOT = "-SNAPSHOT"
# Computed while a file uploads: what Maven 3 checks. SHA-256 is always kept; SHA-512
# is computed from disk on the rare request for it.
MAVEN_DIGESTS = ("md5", "sha1")
# Checksums and Maven's own metadata are small; anything bigger is not one.
SMALL_BODY = 64 * 1024


def split(path: str) -> tuple[list[str], str]:
    """The folders and the file name of a repository path; 400 on anything odd."""
    parts = path.split("/")
    if len(parts) < 2 or not all(SEGMENT_RE.match(p) and ".." not in p for p in parts):
        maven_error(400, f"'{path}' is not a Maven repository path")
    return parts[:-1], parts[-1]


def checksum_of(file_name: str) -> tuple[str, Optional[str]]:
    """(the file a checksum file is for, the algorithm), or (file_name, None)."""
    for suffix, algorithm in CHECKSUMS.items():
        if file_name.endswith(suffix):
            return file_name[:-len(suffix)], algorithm
    return file_name, None


def coordinates(folders: list[str]) -> tuple[str, str]:
    """(package name `group/path/artifactId`, version) of a version folder."""
    if len(folders) < 3:
        maven_error(400, "a Maven path is groupId/artifactId/version/file")
    return "/".join(folders[:-1]), folders[-1]


# Upload: project level only, as GitLab.

@bp.route(PROJECT, methods=["PUT"])
def maven_upload(ref, path):
    project, _ = project_for(Action.WRITE_PACKAGE, ref, FORMAT)
    folders, file_name = split(path)
    target, algorithm = checksum_of(file_name)
    if target == METADATA:
        # Maven uploads the metadata it merged itself; ours is generated from the
        # files, so its copy (and its checksums) are read and dropped.
        _small_body()
        return Response(status=200)
    name, version = coordinates(folders)
    if algorithm is not None:
        return _verify_checksum(project, name, version, target, algorithm)
    artifact = name.rpartition("/")[2]
    if not file_name.startswith(artifact + "-"):
        maven_error(400, f"'{file_name}' does not belong to artifact '{artifact}'")
    unique = not version.endswith(SNAPSHOT) and not project.maven_duplicates_allowed
    if unique and packages.has_file(project, "maven", name, version, file_name):
        _duplicate(file_name)  # refused before the body is read
    upload = receive_body(FORMAT, MAVEN_DIGESTS)
    try:
        packages.add_file(project, "maven", name, version, upload, file_name=file_name,
                          unique_file_name=unique)
    except Invalid:
        _duplicate(file_name)
    return Response(status=200)


def _duplicate(file_name: str) -> NoReturn:
    maven_error(400, f"Duplicate package is not allowed: {file_name} is already in this "
                     "release (the project does not allow duplicate Maven uploads)")


def _small_body() -> bytes:
    if (spool.length() or 0) > SMALL_BODY:
        maven_error(413, "a checksum or metadata file is never this large")
    with body_errors(FORMAT):
        body = spool.read(SMALL_BODY + 1)
    if len(body) > SMALL_BODY:
        maven_error(413, "a checksum or metadata file is never this large")
    return body


def _verify_checksum(project: Project, name: str, version: str, file_name: str,
                     algorithm: str) -> Response:
    sent = _small_body().decode("ascii", "replace").strip().split(" ")[0].lower()
    row = packages.newest_file([project], "maven", name, version, file_name)
    if row is None:
        maven_error(404, f"{file_name} has not been uploaded: upload it before its checksum")
    actual = _digest(row, algorithm)
    if not hmac.compare_digest(sent.encode(), actual.encode()):
        maven_error(400, f"Checksum mismatch: the {algorithm} sent for {file_name} does not "
                         "match the stored file")
    return Response(status=200)


def _digest(row, algorithm: str) -> str:
    stored = {"md5": row.file_md5, "sha1": row.file_sha1, "sha256": row.file_sha256,
              "sha512": row.file_sha512}[algorithm]
    if stored is not None:
        return stored
    sha256 = row.file_sha256
    packages.end_reads()  # no connection held while the file is read
    return package_storage.file_digest(sha256, algorithm)


# Download: the same answer at every level, from the projects the credentials can read.

@bp.route(PROJECT, methods=["GET"])
def maven_project_download(ref, path):
    project, _ = project_for(Action.READ_PACKAGE, ref, FORMAT)
    return _download([project], path)


@bp.route(GROUP, methods=["GET"])
def maven_group_download(ref, path):
    _, principal, projects = group_for(ref, FORMAT)
    return _download_or_challenge(principal, projects, path)


@bp.route(INSTANCE, methods=["GET"])
def maven_instance_download(path):
    principal, projects = instance_for(FORMAT)
    return _download_or_challenge(principal, projects, path)


def _download_or_challenge(principal, projects: list[Project], path: str):
    response = _download(projects, path, missing=None)
    if response is None:
        if principal.is_anonymous:
            # What anonymous callers cannot find may be private: Maven sends its
            # <server> password only after a challenge.
            maven_error(401, "authentication required", **challenge_headers())
        maven_error(404, "404 Package Not Found")
    return response


@bp.route(GROUP, methods=["PUT"])
@bp.route(INSTANCE, methods=["PUT"])
def maven_upload_elsewhere(path, ref=None):
    maven_error(405, "Maven packages are uploaded to a project: "
                     "/api/v4/projects/:id/packages/maven/...")


MISSING = object()


def _download(projects: list[Project], path: str, missing=MISSING):
    folders, file_name = split(path)
    target, algorithm = checksum_of(file_name)
    if target == METADATA:
        body = _metadata(projects, folders)
        if body is not None:
            return _text(body if algorithm is None
                         else hashlib.new(algorithm, body).hexdigest().encode(), algorithm)
    elif len(folders) >= 3:
        name, version = coordinates(folders)
        row = packages.newest_file(projects, "maven", name, version, target)
        if row is not None:
            if algorithm is None:
                return send_package_file(row, _mimetype(target))
            return _text(_digest(row, algorithm).encode(), algorithm)
    if missing is MISSING:
        maven_error(404, "404 Package Not Found")
    return missing


def _text(body: bytes, algorithm: Optional[str]) -> Response:
    packages.end_reads()
    mimetype = "text/plain" if algorithm else "application/xml"
    return Response(body, mimetype=mimetype, headers={"Cache-Control": "private, no-cache"})


def _mimetype(file_name: str) -> str:
    if file_name.endswith(".pom"):
        return "application/xml"
    if file_name.endswith(".jar"):
        return "application/java-archive"
    return "application/octet-stream"


# maven-metadata.xml, generated

def _metadata(projects: list[Project], folders: list[str]) -> Optional[bytes]:
    """The artifact's (versions) or a SNAPSHOT version's (builds) metadata, if any."""
    if len(folders) >= 2:
        name = "/".join(folders)
        versions = packages.versions_of(projects, "maven", name)
        if versions:
            return _artifact_metadata(name, versions)
    if len(folders) >= 3 and folders[-1].endswith(SNAPSHOT):
        name, version = coordinates(folders)
        files = packages.file_names(projects, "maven", name, version)
        if files:
            return _snapshot_metadata(name, version, files)
    return None


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


def _head(name: str) -> tuple[str, str]:
    group_path, _, artifact = name.rpartition("/")
    return group_path.replace("/", "."), artifact


def _artifact_metadata(name: str, versions) -> bytes:
    group_id, artifact = _head(name)
    seen = list(dict.fromkeys(v.version for v in versions))
    releases = [v for v in seen if not v.endswith(SNAPSHOT)]
    updated = max(v.updated_at for v in versions)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<metadata>",
             f"  <groupId>{escape(group_id)}</groupId>",
             f"  <artifactId>{escape(artifact)}</artifactId>", "  <versioning>",
             f"    <latest>{escape(seen[-1])}</latest>"]
    if releases:
        lines.append(f"    <release>{escape(releases[-1])}</release>")
    lines.append("    <versions>")
    lines += [f"      <version>{escape(v)}</version>" for v in seen]
    lines += ["    </versions>", f"    <lastUpdated>{_stamp(updated)}</lastUpdated>",
              "  </versioning>", "</metadata>", ""]
    return "\n".join(lines).encode()


def _snapshot_metadata(name: str, version: str, files) -> bytes:
    """Version-level metadata: the newest build, and the file of each classifier/type."""
    group_id, artifact = _head(name)
    base = re.escape(version[:-len(SNAPSHOT)])
    pattern = re.compile(rf"^{re.escape(artifact)}-{base}-(\d{{8}}\.\d{{6}})-(\d+)"
                         r"(?:-([A-Za-z0-9_][A-Za-z0-9_+-]*))?\.([A-Za-z0-9][A-Za-z0-9.]*)$")
    newest: dict[tuple[str, str], tuple[int, str, str, datetime]] = {}
    latest: Optional[tuple[int, str]] = None
    for file_name, created in files:
        match = pattern.match(file_name)
        if not match:
            continue
        timestamp, build, classifier, extension = match.groups()
        build_number = int(build)
        key = (classifier or "", extension)
        if key not in newest or newest[key][0] <= build_number:
            newest[key] = (build_number, timestamp, f"{version[:-len(SNAPSHOT)]}-{timestamp}-{build}",
                           created)
        if latest is None or latest[0] <= build_number:
            latest = (build_number, timestamp)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<metadata modelVersion="1.1.0">',
             f"  <groupId>{escape(group_id)}</groupId>",
             f"  <artifactId>{escape(artifact)}</artifactId>",
             f"  <version>{escape(version)}</version>", "  <versioning>"]
    updated = max(created for _, created in files)
    if latest is not None:
        lines += ["    <snapshot>", f"      <timestamp>{latest[1]}</timestamp>",
                  f"      <buildNumber>{latest[0]}</buildNumber>", "    </snapshot>"]
    lines.append(f"    <lastUpdated>{_stamp(updated)}</lastUpdated>")
    lines.append("    <snapshotVersions>")
    for (classifier, extension), (_, _, value, created) in sorted(newest.items()):
        lines.append("      <snapshotVersion>")
        if classifier:
            lines.append(f"        <classifier>{escape(classifier)}</classifier>")
        lines += [f"        <extension>{escape(extension)}</extension>",
                  f"        <value>{escape(value)}</value>",
                  f"        <updated>{_stamp(created)}</updated>", "      </snapshotVersion>"]
    lines += ["    </snapshotVersions>", "  </versioning>", "</metadata>", ""]
    return "\n".join(lines).encode()
