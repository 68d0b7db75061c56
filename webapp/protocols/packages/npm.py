"""npm: the registry at GitLab's project, group and instance URLs.

Publishing, dist-tags, deprecating and unpublishing happen at the project level; the
group level (`/api/v4/groups/:id/-/packages/npm/`) and the instance level
(`/api/v4/packages/npm/`, for a scoped name `@scope/...` the projects under the
top-level group `scope`) install. npm encodes a scoped name's slash (`@scope%2fname`)
in metadata and dist-tag URLs but not in the tarball URLs we hand out
(`@scope/name/-/@scope/name-1.0.0.tgz`), so the path after `/packages/npm/` is read
from the raw URI and matched against the route table here.
"""
import base64
import binascii
import copy
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Optional
import re
from urllib.parse import unquote

from flask import Response, jsonify, request

from ...models import Package, Project
from ...services import package_storage, packages
from ...services.errors import Forbidden, Invalid, NotFound
from ...services.policy import Action, Principal
from .common import (PackageFormat, body_errors, bp, challenge_headers, error, external_url, group_for,
                     instance_for, project_for, raw_segment, send_package_file)
from .json_stream import JSONError, StreamingJSON, TooLargeJSON

FORMAT = PackageFormat("npm")  # every kind (npm sends a bearer token); errors as GitLab JSON

NAME = r"(?P<name>(?:@[^/]+/)?[^/@-][^/]*)"
TARBALL = r"/-/(?:@[^/]+/)?(?P<file>[^/]+\.tgz)"
ROUTES = [
    (re.compile(r"^-/ping/?$"), "ping"),
    (re.compile(r"^-/whoami/?$"), "whoami"),
    (re.compile(r"^-/npm/v1/security/(?:advisories/bulk|audits/quick)/?$"), "audit"),
    (re.compile(r"^-/package/" + NAME + r"/dist-tags/?$"), "tags"),
    (re.compile(r"^-/package/" + NAME + r"/dist-tags/(?P<tag>[^/]+)$"), "tag"),
    # npm deletes a tarball at its own path plus `/-rev/<rev>`, found from the URL we
    # gave it, so whatever comes before the name is accepted.
    (re.compile(r"^(?:.*?/)??" + NAME + TARBALL + r"/-rev/[^/]+$"), "tarball_rev"),
    (re.compile(r"^" + NAME + TARBALL + r"$"), "tarball"),
    (re.compile(r"^" + NAME + r"/-rev/[^/]+$"), "package_rev"),
    (re.compile(r"^" + NAME + r"/?$"), "package"),
]
# (route, method) → (action, handler); writes exist only at the project level.
METHODS = {
    ("ping", "GET"): (Action.READ_PACKAGE, "ping"),
    ("whoami", "GET"): (Action.READ_PACKAGE, "whoami"),
    ("audit", "POST"): (Action.READ_PACKAGE, "audit"),
    ("package", "GET"): (Action.READ_PACKAGE, "metadata"),
    ("package", "PUT"): (Action.WRITE_PACKAGE, "publish"),
    ("package_rev", "PUT"): (Action.DELETE_PACKAGE, "unpublish_versions"),
    ("package_rev", "DELETE"): (Action.DELETE_PACKAGE, "unpublish_package"),
    ("tarball", "GET"): (Action.READ_PACKAGE, "tarball"),
    ("tarball_rev", "DELETE"): (Action.DELETE_PACKAGE, "delete_tarball"),
    ("tags", "GET"): (Action.READ_PACKAGE, "list_tags"),
    ("tag", "PUT"): (Action.WRITE_PACKAGE, "add_tag"),
    ("tag", "DELETE"): (Action.WRITE_PACKAGE, "delete_tag"),
}
# Everything in a publish document but the tarball (manifest, readme) stays under this.
JSON_LIMIT = 16 * 1024 * 1024
SMALL_JSON = 64 * 1024


@dataclass
class Registry:
    """One npm registry as a client sees it: where it lives and what it reads."""

    base: str                   # its URL, which tarball URLs start with
    projects: list[Project]     # where packages are read from
    principal: Principal
    project: Optional[Project] = None  # where writes go (the project level only)
    scoped_only: bool = False   # the instance level serves @scope/name only


@bp.route("/api/v4/projects/<path:ref>/packages/npm/<path:rest>",
          methods=["GET", "PUT", "DELETE", "POST"])
def npm(ref, rest):
    kind, args, action, handler = _route("/api/v4/projects/", "/packages/npm/", rest)
    project, principal = project_for(action, ref, FORMAT)
    base = f"{external_url()}/api/v4/projects/{project.id}/packages/npm"
    return _handle(Registry(base, [project], principal, project), handler, args)


@bp.route("/api/v4/groups/<path:ref>/-/packages/npm/<path:rest>",
          methods=["GET", "PUT", "DELETE", "POST"])
def npm_group(ref, rest):
    kind, args, action, handler = _route("/api/v4/groups/", "/-/packages/npm/", rest)
    _read_only(action)
    group, principal, projects = group_for(ref, FORMAT)
    base = f"{external_url()}/api/v4/groups/{group.id}/-/packages/npm"
    return _handle(Registry(base, projects, principal), handler, args)


@bp.route("/api/v4/packages/npm/<path:rest>", methods=["GET", "PUT", "DELETE", "POST"])
def npm_instance(rest):
    kind, args, action, handler = _route("/api/v4/packages/npm/", "", rest)
    _read_only(action)
    principal, projects = instance_for(FORMAT)
    name = args.get("name", "")
    if name.startswith("@"):
        # GitLab's rule: @scope/name lives in a project under the top-level group `scope`.
        scope = name[1:].partition("/")[0].lower()
        projects = [p for p in projects if p.full_path.split("/", 1)[0].lower() == scope]
    registry = Registry(f"{external_url()}/api/v4/packages/npm", projects, principal,
                        scoped_only=True)
    return _handle(registry, handler, args)


def _route(prefix: str, marker: str, rest: str):
    raw = raw_segment(prefix)
    if raw is not None and (not marker or marker in raw):
        rest = unquote(raw.partition(marker)[2] if marker else raw)
    for pattern, kind in ROUTES:
        match = pattern.match(rest)
        if match:
            break
    else:
        error(404, "404 Not Found")
    method = "GET" if request.method == "HEAD" else request.method
    entry = METHODS.get((kind, method))
    if entry is None:
        # Never 404 here: npm reads a 404 on a write as "already gone" and says success.
        error(405, f"{request.method} is not supported here")
    args = match.groupdict()
    if "name" in args and not packages.NPM_NAME_RE.match(args["name"]):
        error(400, f"'{args['name']}' is not a valid npm package name")
    return kind, args, entry[0], entry[1]


def _read_only(action: Action) -> None:
    if action != Action.READ_PACKAGE:
        error(405, "publish and change npm packages at the project level: "
                   "/api/v4/projects/:id/packages/npm/")


def _handle(registry: Registry, handler: str, args: dict):
    try:
        return HANDLERS[handler](registry, **args)
    except NotFound as exc:
        error(404, str(exc))
    except Forbidden as exc:
        error(403, str(exc))
    except Invalid as exc:
        error(400, str(exc))


def _source(registry: Registry, name: str) -> int:
    """The project whose package `name` this registry serves."""
    if registry.scoped_only and not name.startswith("@"):
        raise NotFound("404 the instance-level registry serves scoped packages (@scope/name)")
    if registry.project is not None:
        return registry.project.id
    try:
        return packages.npm_source(registry.projects, name)
    except NotFound:
        if registry.principal.is_anonymous:
            error(401, "authentication required", **challenge_headers())
        raise


def _project(project_id: int) -> Project:
    return Project(id=project_id)  # the services only need the id


def tarball_url(base: str, name: str, file_name: str) -> str:
    scope = name.rpartition("/")[0]
    return f"{base}/{name}/-/{scope + '/' if scope else ''}{file_name}"


def _revision(versions: list[Package]) -> str:
    """A `_rev` for the document: npm sends it back in unpublish URLs."""
    seed = ",".join(f"{p.id}:{p.updated_at.isoformat()}" for p in versions)
    return f"{len(versions)}-{hashlib.sha1(seed.encode()).hexdigest()[:16]}"


# Reading

def _metadata(registry, name):
    project = _project(_source(registry, name))
    versions, tags = packages.npm_versions(project, name)
    document = {"_id": name, "_rev": _revision(versions), "name": name, "versions": {},
                "dist-tags": tags, "time": {}}
    for package in versions:
        manifest = _version_manifest(registry, package)
        if manifest is not None:
            document["versions"][package.version] = manifest
            document["time"][package.version] = package.created_at.strftime(
                "%Y-%m-%dT%H:%M:%S.000Z")
    if "latest" not in tags and document["versions"]:
        document["dist-tags"]["latest"] = versions[-1].version
    packages.end_reads()
    return jsonify(document)


def _version_manifest(registry: Registry, package: Package):
    if not package.files:
        return None
    row = package.files[-1]
    manifest = copy.deepcopy(package.metadata_json or {})
    manifest.update(name=package.name, version=package.version)
    manifest["dist"] = {
        "shasum": row.file_sha1,
        "integrity": "sha512-" + base64.b64encode(bytes.fromhex(row.file_sha512)).decode(),
        "tarball": tarball_url(registry.base, package.name, row.file_name),
    }
    return manifest


def _tarball(registry, name, file):
    version = _version_from_file(name, file)
    try:
        row = packages.latest_file(_project(_source(registry, name)), "npm", name, version, file)
    except NotFound:
        raise NotFound("404 Package Not Found")
    return send_package_file(row, "application/octet-stream")


def _version_from_file(name: str, file: str) -> str:
    base = name.rpartition("/")[2]
    if not file.startswith(base + "-") or not file.endswith(".tgz"):
        raise NotFound("404 Package Not Found")
    return file[len(base) + 1:-len(".tgz")]


def _list_tags(registry, name):
    project = _project(_source(registry, name))
    packages.npm_versions(project, name)  # 404 for an unknown package
    return jsonify(packages.npm_tags(project, name))


def _ping(registry):
    return jsonify({})


def _whoami(registry):
    if registry.principal.is_anonymous:
        error(401, "authentication required", **challenge_headers())
    return jsonify(username=registry.principal.name)


def _audit(registry):
    # Gatehouse keeps no advisory database: the answer is an empty report, in the shape
    # of the bulk endpoint (npm 7+) or of the older quick audit, so `npm audit` passes.
    if request.path.rstrip("/").endswith("/quick"):
        return jsonify(actions=[], advisories={}, muted=[], metadata={
            "vulnerabilities": {"info": 0, "low": 0, "moderate": 0, "high": 0, "critical": 0},
            "dependencies": 0, "devDependencies": 0, "optionalDependencies": 0,
            "totalDependencies": 0})
    return jsonify({})


# Publishing: the document is read as it streams; the tarball goes straight to storage.

class _Publish:
    """One `npm publish` (or `npm deprecate`) document, read member by member."""

    def __init__(self, project: Project, name: str):
        self.project, self.name = project, name
        self.version: Optional[str] = None
        self.manifest: Optional[dict] = None
        self.upload: Optional[package_storage.Upload] = None
        self.file_key: Optional[str] = None
        self.rest = b""
        self.checked = False

    def streamed(self, path: tuple) -> bool:
        return len(path) == 3 and path[0] == "_attachments" and path[2] == "data"

    def on_member(self, key: str, value) -> None:
        if key == "name" and value != self.name:
            raise Invalid({"name": ["the package name in the body does not match the URL"]})
        if key == "versions":
            self._versions(value)

    def _versions(self, versions) -> None:
        if not isinstance(versions, dict) or not versions:
            raise Invalid({"versions": ["send at least one version"]})
        if len(versions) == 1:
            version, manifest = next(iter(versions.items()))
            if not packages.NPM_VERSION_RE.match(version) or not isinstance(manifest, dict):
                raise Invalid({"version": [f"'{version}' is not a valid version"]})
            self.version, self.manifest = version, manifest

    def check_new(self) -> None:
        """Refuse a republished version before a byte of its tarball is decoded."""
        if not self.checked and self.version is not None:
            packages.npm_check_new_version(self.project, self.name, self.version)
            self.checked = True

    def sink(self, path: tuple):
        if self.upload is not None:
            raise Invalid({"_attachments": ["publish exactly one tarball"]})
        # npm sends `versions` first; a client that sends the tarball first is checked
        # once the document has been read.
        self.check_new()
        self.file_key = path[1]
        self.upload = package_storage.Upload.start(("sha1", "sha512"),
                                                   limit=package_storage.max_size())
        return self._write

    def _write(self, piece: Optional[bytes]) -> None:
        data = self.rest + (piece or b"")
        cut = len(data) if piece is None else len(data) - len(data) % 4
        self.rest = data[cut:]
        if cut:
            try:
                self.upload.write(binascii.a2b_base64(data[:cut], strict_mode=True))
            except binascii.Error:
                raise Invalid({"_attachments": ["the tarball is not valid base64"]})
        if piece is None:
            self.upload.finish()

    def discard(self) -> None:
        if self.upload is not None:
            self.upload.discard()


def _publish(registry, name):
    project = registry.project
    length = request.content_length
    limit = package_storage.max_size() * 4 // 3 + JSON_LIMIT
    if length is not None and length > limit:
        error(413, f"the package document is too large (tarballs up to "
                   f"{package_storage.max_size()} bytes)", Connection="close")
    publish = _Publish(project, name)
    try:
        document = _read_document(JSON_LIMIT, publish)
        if publish.upload is None:
            return _update(project, name, document)
        return _store(publish, document)
    except BaseException:
        publish.discard()
        raise


def _read_document(limit: int, publish: Optional[_Publish] = None) -> dict:
    reader = StreamingJSON(
        request.stream, limit=limit,
        read=lambda size: package_storage.read_body(request.stream, size),
        streamed=publish.streamed if publish else (lambda path: False),
        sink=publish.sink if publish else None,
        on_member=publish.on_member if publish else (lambda key, value: None))
    try:
        with body_errors(FORMAT):
            return reader.parse()
    except TooLargeJSON as exc:
        error(413, str(exc), Connection="close")
    except JSONError as exc:
        raise Invalid({"body": [str(exc)]})


def _store(publish: _Publish, document: dict):
    name, version, upload = publish.name, publish.version, publish.upload
    if len(document.get("versions") or {}) != 1:
        raise Invalid({"versions": ["publish exactly one version"]})
    publish.check_new()
    attachment = document["_attachments"][publish.file_key]
    file_name = publish.file_key.rpartition("/")[2]
    if file_name != f"{name.rpartition('/')[2]}-{version}.tgz":
        raise Invalid({"_attachments": [f"unexpected tarball name '{publish.file_key}'"]})
    if not upload.size or ("length" in attachment and attachment["length"] != upload.size):
        raise Invalid({"_attachments": ["the tarball is empty or its length is wrong"]})
    dist = publish.manifest.get("dist") or {}
    if dist.get("shasum") and not hmac.compare_digest(str(dist["shasum"]).lower().encode(),
                                                      upload.digests["sha1"].encode()):
        raise Invalid({"dist.shasum": ["does not match the tarball"]})
    integrity = str(dist.get("integrity") or "")
    actual = "sha512-" + base64.b64encode(bytes.fromhex(upload.digests["sha512"])).decode()
    if integrity.startswith("sha512-") and not hmac.compare_digest(integrity.encode(),
                                                                   actual.encode()):
        raise Invalid({"dist.integrity": ["does not match the tarball"]})
    tags = document.get("dist-tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise Invalid({"dist-tags": ["dist-tags must map tags to versions"]})
    for tag in tags:
        if not packages.NPM_TAG_RE.match(tag):
            raise Invalid({"dist-tags": [f"'{tag}' is not a valid tag"]})
    stored = {k: v for k, v in publish.manifest.items() if not k.startswith("_") and k != "dist"}
    packages.npm_publish(publish.project, name, version, stored, upload, file_name=file_name,
                         tags=tags)
    return jsonify(ok=True, id=name, rev=version), 201


def _update(project, name, document):
    """A document without a tarball: `npm deprecate` (and undeprecate) sends one."""
    versions = document.get("versions")
    if not isinstance(versions, dict) or not all(isinstance(m, dict) for m in versions.values()):
        raise Invalid({"versions": ["versions must map versions to manifests"]})
    messages = {}
    for version, manifest in versions.items():
        if "deprecated" in manifest:
            if not isinstance(manifest["deprecated"], str) or len(manifest["deprecated"]) > 1024:
                raise Invalid({"deprecated": ["a deprecation is a message of up to 1024 characters"]})
            messages[version] = manifest["deprecated"]
    if not messages:
        raise Invalid({"_attachments": ["publish one version with its tarball"]})
    packages.npm_deprecate(project, name, messages)
    return jsonify(ok=True, id=name), 200


# Unpublishing: npm PUTs the document without the versions it removes, or DELETEs it.

def _unpublish_versions(registry, name):
    document = _read_document(JSON_LIMIT)
    versions = document.get("versions")
    if not isinstance(versions, dict):
        raise Invalid({"versions": ["versions must map versions to manifests"]})
    tags = document.get("dist-tags") or {}
    if not isinstance(tags, dict):
        raise Invalid({"dist-tags": ["dist-tags must map tags to versions"]})
    packages.npm_unpublish_versions(registry.project, name, versions.keys(),
                                    {k: v for k, v in tags.items() if isinstance(v, str)})
    return jsonify(ok=True, id=name), 200


def _unpublish_package(registry, name):
    packages.delete_package(registry.project, "npm", name)
    return jsonify(ok=True, id=name), 200


def _delete_tarball(registry, name, file):
    version = _version_from_file(name, file)
    packages.delete_version(registry.project, "npm", name, version)
    return jsonify(ok=True), 200


# dist-tags

def _add_tag(registry, name, tag):
    version = _read_document_value()
    if not isinstance(version, str):
        raise Invalid({"version": ["send the version as a JSON string"]})
    if not packages.NPM_TAG_RE.match(tag):
        raise Invalid({"tag": [f"'{tag}' is not a valid tag"]})
    packages.npm_set_tag(registry.project, name, tag, version)
    return Response(status=204)


def _read_document_value():
    """A small JSON value (a dist-tag's version string)."""
    body = package_storage.read_body(request.stream, SMALL_JSON + 1)
    if len(body) > SMALL_JSON:
        error(413, "the body is too large")
    try:
        return json.loads(body)
    except ValueError:
        raise Invalid({"body": ["the body is not JSON"]})
    except RecursionError:
        raise Invalid({"body": ["the JSON document is nested too deeply"]})


def _delete_tag(registry, name, tag):
    packages.npm_delete_tag(registry.project, name, tag)
    return Response(status=204)


HANDLERS = {
    "metadata": _metadata, "publish": _publish, "tarball": _tarball,
    "list_tags": _list_tags, "add_tag": _add_tag, "delete_tag": _delete_tag,
    "ping": _ping, "whoami": _whoami, "audit": _audit,
    "unpublish_versions": _unpublish_versions, "unpublish_package": _unpublish_package,
    "delete_tarball": _delete_tarball,
}
