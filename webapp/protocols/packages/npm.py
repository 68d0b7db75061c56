"""npm: a project-level registry for `npm publish`, `npm install` and `npm dist-tag`.

npm encodes a scoped name's slash (`@scope%2fname`) in metadata and dist-tag URLs but
not in the tarball URLs we hand out (`@scope/name/-/name-1.0.0.tgz`), so the path after
`/packages/npm/` is read from the raw URI and matched against a route table here.
"""
import base64
import binascii
import copy
import hashlib
import hmac
import json
import re
from urllib.parse import unquote

from flask import Response, jsonify, request

from ...models import Package
from ...services import package_storage, packages
from ...services.errors import Forbidden, Invalid, NotFound
from ...services.policy import Action
from .common import PackageFormat, bp, error, external_url, project_for, raw_segment, send_package_file

FORMAT = PackageFormat("npm")  # every kind; errors as GitLab JSON

NAME = r"(?P<name>(?:@[^/]+/)?[^/@][^/]*)"
ROUTES = [
    (re.compile(r"^-/package/" + NAME + r"/dist-tags/?$"), "tags"),
    (re.compile(r"^-/package/" + NAME + r"/dist-tags/(?P<tag>[^/]+)$"), "tag"),
    (re.compile(r"^" + NAME + r"/-/(?:@[^/]+/)?(?P<file>[^/]+\.tgz)$"), "tarball"),
    (re.compile(r"^" + NAME + r"/?$"), "package"),
]
METHODS = {
    ("package", "GET"): (Action.READ_PACKAGE, "metadata"),
    ("package", "PUT"): (Action.WRITE_PACKAGE, "publish"),
    ("tarball", "GET"): (Action.READ_PACKAGE, "tarball"),
    ("tags", "GET"): (Action.READ_PACKAGE, "list_tags"),
    ("tag", "PUT"): (Action.WRITE_PACKAGE, "add_tag"),
    ("tag", "DELETE"): (Action.WRITE_PACKAGE, "delete_tag"),
}
# npm sends the tarball base64-encoded inside one JSON document, which has to be read
# whole: tarballs are capped lower than other files so a publish cannot eat the memory.
NPM_MAX_TARBALL = 128 * 1024 * 1024
JSON_OVERHEAD = 4 * 1024 * 1024


def max_tarball() -> int:
    return min(package_storage.max_size(), NPM_MAX_TARBALL)


@bp.route("/api/v4/projects/<path:ref>/packages/npm/<path:rest>",
          methods=["GET", "PUT", "DELETE"])
def npm(ref, rest):
    raw = raw_segment("/api/v4/projects/")
    if raw is not None and "/packages/npm/" in raw:
        rest = unquote(raw.partition("/packages/npm/")[2])
    for pattern, kind in ROUTES:
        match = pattern.match(rest)
        if match:
            break
    else:
        error(404, "404 Not Found")
    entry = METHODS.get((kind, "GET" if request.method == "HEAD" else request.method))
    if entry is None:
        error(405, f"{request.method} is not supported here")
    action, handler = entry
    project, _ = project_for(action, ref, FORMAT)
    args = match.groupdict()
    if not packages.NPM_NAME_RE.match(args["name"]):
        error(400, f"'{args['name']}' is not a valid npm package name")
    try:
        return HANDLERS[handler](project, **args)
    except NotFound as exc:
        error(404, str(exc))
    except Forbidden as exc:
        error(403, str(exc))
    except Invalid as exc:
        error(400, str(exc))


def tarball_url(project_id: int, name: str, file_name: str) -> str:
    scope = name.rpartition("/")[0]
    return (f"{external_url()}/api/v4/projects/{project_id}/packages/npm/{name}/-/"
            f"{scope + '/' if scope else ''}{file_name}")


def _metadata(project, name):
    versions, tags = packages.npm_versions(project, name)
    document = {"name": name, "versions": {}, "dist-tags": tags, "time": {}}
    for package in versions:
        manifest = _version_manifest(package)
        if manifest is not None:
            document["versions"][package.version] = manifest
            document["time"][package.version] = package.created_at.strftime(
                "%Y-%m-%dT%H:%M:%S.000Z")
    if "latest" not in tags and document["versions"]:
        document["dist-tags"]["latest"] = versions[-1].version
    return jsonify(document)


def _version_manifest(package: Package):
    if not package.files:
        return None
    row = package.files[-1]
    manifest = copy.deepcopy(package.metadata_json or {})
    manifest.update(name=package.name, version=package.version)
    manifest["dist"] = {
        "shasum": row.file_sha1,
        "integrity": "sha512-" + base64.b64encode(bytes.fromhex(row.file_sha512)).decode(),
        "tarball": tarball_url(package.project_id, package.name, row.file_name),
    }
    return manifest


def _tarball(project, name, file):
    version = _version_from_file(name, file)
    try:
        row = packages.latest_file(project, "npm", name, version, file)
    except NotFound:
        raise NotFound("404 Package Not Found")
    return send_package_file(row, "application/octet-stream")


def _version_from_file(name: str, file: str) -> str:
    base = name.rpartition("/")[2]
    if not file.startswith(base + "-") or not file.endswith(".tgz"):
        raise NotFound("404 Package Not Found")
    return file[len(base) + 1:-len(".tgz")]


def _publish(project, name):
    document = _read_json(max_tarball() * 4 // 3 + JSON_OVERHEAD)
    if not isinstance(document, dict) or document.get("name") != name:
        raise Invalid({"name": ["the package name in the body does not match the URL"]})
    versions, attachments = document.get("versions"), document.get("_attachments")
    if not isinstance(versions, dict) or len(versions) != 1:
        raise Invalid({"versions": ["publish exactly one version"]})
    if not isinstance(attachments, dict) or len(attachments) != 1:
        raise Invalid({"_attachments": ["publish exactly one tarball"]})
    version, manifest = next(iter(versions.items()))
    if not packages.NPM_VERSION_RE.match(version) or not isinstance(manifest, dict):
        raise Invalid({"version": [f"'{version}' is not a valid version"]})
    key, attachment = next(iter(attachments.items()))
    file_name = key.rpartition("/")[2]
    if file_name != f"{name.rpartition('/')[2]}-{version}.tgz":
        raise Invalid({"_attachments": [f"unexpected tarball name '{key}'"]})
    try:
        data = base64.b64decode(attachment.get("data", ""), validate=True)
    except (binascii.Error, AttributeError, TypeError):
        raise Invalid({"_attachments": ["the tarball is not valid base64"]})
    if not data or ("length" in attachment and attachment["length"] != len(data)):
        raise Invalid({"_attachments": ["the tarball is empty or its length is wrong"]})
    if len(data) > max_tarball():
        error(413, f"File is too large (maximum is {max_tarball()} bytes)")
    dist = manifest.get("dist") or {}
    sha1 = hashlib.sha1(data).hexdigest()
    sha512 = hashlib.sha512(data).digest()
    if dist.get("shasum") and not hmac.compare_digest(str(dist["shasum"]).lower(), sha1):
        raise Invalid({"dist.shasum": ["does not match the tarball"]})
    integrity = str(dist.get("integrity") or "")
    if integrity.startswith("sha512-") and not hmac.compare_digest(
            integrity, "sha512-" + base64.b64encode(sha512).decode()):
        raise Invalid({"dist.integrity": ["does not match the tarball"]})
    tags = document.get("dist-tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise Invalid({"dist-tags": ["dist-tags must map tags to versions"]})
    for tag in tags:
        if not packages.NPM_TAG_RE.match(tag):
            raise Invalid({"dist-tags": [f"'{tag}' is not a valid tag"]})
    stored = {k: v for k, v in manifest.items() if not k.startswith("_") and k != "dist"}
    upload = package_storage.receive_bytes(data, ("sha1", "sha512"))
    packages.npm_publish(project, name, version, stored, upload, file_name=file_name,
                         tags=tags)
    return jsonify(ok=True, id=name, rev=version), 201


def _read_json(limit: int):
    length = request.content_length
    message = f"the package document is too large (tarballs up to {max_tarball()} bytes)"
    if length is not None and length > limit:
        error(413, message)
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        error(413, message)
    try:
        return json.loads(body)
    except ValueError:
        raise Invalid({"body": ["the body is not JSON"]})


def _list_tags(project, name):
    packages.npm_versions(project, name)  # 404 for an unknown package
    return jsonify(packages.npm_tags(project, name))


def _add_tag(project, name, tag):
    version = _read_json(4096)
    if not isinstance(version, str):
        raise Invalid({"version": ["send the version as a JSON string"]})
    if not packages.NPM_TAG_RE.match(tag):
        raise Invalid({"tag": [f"'{tag}' is not a valid tag"]})
    packages.npm_set_tag(project, name, tag, version)
    return Response(status=204)


def _delete_tag(project, name, tag):
    packages.npm_delete_tag(project, name, tag)
    return Response(status=204)


HANDLERS = {
    "metadata": _metadata, "publish": _publish, "tarball": _tarball,
    "list_tags": _list_tags, "add_tag": _add_tag, "delete_tag": _delete_tag,
}

