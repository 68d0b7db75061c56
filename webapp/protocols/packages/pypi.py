"""PyPI: twine uploads (the legacy upload API) and pip installs (PEP 503 simple index)."""
import hmac
import re
from html import escape
from typing import Optional

from flask import Response, jsonify, redirect, request
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from ...models import PackageFile
from ...services import package_storage, packages
from ...services.errors import Invalid, NotFound
from ...services.policy import Action
from .common import (PackageFormat, body_errors, bp, error, external_url, group_for, project_for,
                     send_package_file)

FORMAT = PackageFormat("pypi")  # every kind; errors as GitLab JSON

PROJECT = "/api/v4/projects/<path:ref>/packages/pypi"
GROUP = "/api/v4/groups/<path:ref>/-/packages/pypi"
DIST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+!-]*\.(whl|tar\.gz|zip|tar\.bz2|egg)$")
# Only these form fields are kept; the rest (description, classifiers...) are skipped
# as they stream past, so a long README costs nothing. Kept fields are small.
KEPT_FIELDS = {":action", "name", "version", "summary", "requires_python", "sha256_digest",
               "md5_digest", "filetype"}
FIELD_LIMIT = 64 * 1024
# Room for the skipped metadata around the file when checking Content-Length.
FORM_OVERHEAD = 16 * 1024 * 1024
# The decoder's buffer holds at most one chunk plus a boundary's worth of tail.
FEED = 256 * 1024


@bp.route(PROJECT, methods=["POST"])
def pypi_upload(ref):
    project, _ = project_for(Action.WRITE_PACKAGE, ref, FORMAT)
    fields, upload, file_name = _receive_form()
    try:
        name, version, requires_python = _check_upload(fields, upload, file_name)
    except Invalid as exc:
        upload.discard()
        error(400, str(exc))
    try:
        packages.add_file(project, "pypi", name, version, upload, file_name=file_name,
                          unique_file_name=True, requires_python=requires_python,
                          metadata={"summary": fields.get("summary", "")[:1000]})
    except Invalid as exc:
        error(400, f"Validation failed: {exc}")
    return Response("201 Created\n", 201, {"Content-Type": "text/plain"})


def _check_upload(fields: dict[str, str], upload, file_name: str
                  ) -> tuple[str, str, Optional[str]]:
    if fields.get(":action", "file_upload") != "file_upload":
        raise Invalid({":action": [f"Unsupported :action '{fields.get(':action')}'"]})
    name, version = fields.get("name", ""), fields.get("version", "")
    if not packages.PYPI_NAME_RE.match(name):
        raise Invalid({"name": ["name is missing or invalid"]})
    if not packages.PYPI_VERSION_RE.match(version):
        raise Invalid({"version": ["version is missing or invalid"]})
    if not DIST_RE.match(file_name) or ".." in file_name:
        raise Invalid({"content": [f"'{file_name}' is not a valid distribution file name"]})
    for field, algorithm in (("sha256_digest", "sha256"), ("md5_digest", "md5")):
        sent, actual = fields.get(field, "").strip().lower(), upload.digests.get(algorithm)
        if sent and actual and not hmac.compare_digest(sent, actual):
            raise Invalid({field: [
                f"{field} does not match the uploaded file: the file was corrupted on the "
                f"way or the digest is wrong (received {actual})"]})
    requires_python = fields.get("requires_python", "").strip() or None
    if requires_python and len(requires_python) > 255:
        raise Invalid({"requires_python": ["requires_python is too long"]})
    return packages.normalize_pypi_name(name), version, requires_python


def _receive_form():
    """Parse twine's multipart form as it streams: fields to memory, `content` to storage.

    werkzeug's own form parser would spool the file to a temporary file first; here
    the file part goes straight into the hashed upload, so memory stays flat and the
    bytes are written once.
    """
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary:
        error(400, "expected a multipart/form-data upload (as twine sends)")
    length = request.content_length
    limit = package_storage.max_size() + FORM_OVERHEAD
    if length is not None and length > limit:
        error(413, f"File is too large (maximum is {package_storage.max_size()} bytes)",
              Connection="close")
    decoder = MultipartDecoder(boundary.encode("latin-1"), max_form_memory_size=FEED * 4,
                               max_parts=1000)
    with body_errors(FORMAT):
        return _read_form(decoder, request.stream, length)


def _read_form(decoder: MultipartDecoder, stream, length: Optional[int]):
    """Feed the body to the decoder: kept fields, and the `content` part as an upload
    (discarded again if anything fails)."""
    fields: dict[str, str] = {}
    upload, file_name = None, ""
    part, buffer, received = None, bytearray(), 0
    try:
        while True:
            chunk = package_storage.read_body(stream, FEED)
            received += len(chunk)
            decoder.receive_data(chunk or None)
            while True:
                event = decoder.next_event()
                if isinstance(event, (NeedData, Epilogue)):
                    break
                if isinstance(event, File):
                    if event.name == "content" and upload is None:
                        # MD5 only when the client sent one to check (twine 7 does not).
                        upload = package_storage.Upload.start(
                            ("md5",) if fields.get("md5_digest") else ())
                        file_name, part = event.filename or "", "content"
                    else:
                        part = None  # other files (signatures) are not kept
                elif isinstance(event, Field):
                    part = event.name if event.name in KEPT_FIELDS else None
                    buffer = bytearray()
                elif isinstance(event, Data):
                    if part == "content":
                        upload.write(event.data)
                    elif part is not None:
                        buffer += event.data
                        if len(buffer) > FIELD_LIMIT:
                            error(400, f"form field '{part}' is too large")
                        if not event.more_data:
                            fields[part] = buffer.decode("utf-8", "replace")
            if not chunk:
                break
        if length is not None and received != length:
            raise package_storage.Incomplete(f"received {received} of {length} bytes")
        if upload is None:
            error(400, "content is missing: send the distribution file as `content`")
        upload.finish()
    except BaseException:
        if upload is not None:
            upload.discard()
        raise
    return fields, upload, file_name


# The simple index (PEP 503), per project and per group.

@bp.route(PROJECT + "/simple/")
def pypi_project_index(ref):
    project, _ = project_for(Action.READ_PACKAGE, ref, FORMAT)
    return _index(packages.pypi_names([project]))


@bp.route(PROJECT + "/simple/<name>/")
def pypi_project_links(ref, name):
    project, _ = project_for(Action.READ_PACKAGE, ref, FORMAT)
    return _links(name, packages.pypi_files([project], packages.normalize_pypi_name(name)))


@bp.route(GROUP + "/simple/")
def pypi_group_index(ref):
    _, _, projects = group_for(ref, FORMAT)
    return _index(packages.pypi_names(projects))


@bp.route(GROUP + "/simple/<name>/")
def pypi_group_links(ref, name):
    _, _, projects = group_for(ref, FORMAT)
    return _links(name, packages.pypi_files(projects, packages.normalize_pypi_name(name)))


@bp.route(PROJECT + "/files/<sha256>/<file_name>")
def pypi_download(ref, sha256, file_name):
    project, _ = project_for(Action.READ_PACKAGE, ref, FORMAT)
    # PEP 658: `<wheel URL>.metadata` is the wheel's core metadata.
    wheel_name = file_name[:-len(METADATA_SUFFIX)] if file_name.endswith(METADATA_SUFFIX) else None
    try:
        row = packages.file_by_digest(project, "pypi", sha256.lower(), wheel_name or file_name)
    except NotFound as exc:
        error(404, str(exc))
    if wheel_name is None:
        return send_package_file(row)
    metadata = packages.wheel_metadata(row.file_sha256, row.file_name)
    if metadata is None:
        error(404, "404 Metadata Not Found")
    return Response(metadata, 200, {"Content-Type": "text/plain; charset=utf-8",
                                    "Cache-Control": "private, max-age=3600"})


METADATA_SUFFIX = ".metadata"

# PEP 691: the same index as JSON or HTML, chosen by the Accept header (pip asks for
# JSON first). Without a preference the HTML form of PEP 503 is served.
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPES = ("application/vnd.pypi.simple.v1+html", "text/html")
LATEST_JSON = "application/vnd.pypi.simple.latest+json"


def _wants_json() -> bool:
    accept = request.accept_mimetypes
    if not request.headers.get("Accept"):
        return False
    best = accept.best_match([*HTML_TYPES, JSON_TYPE, LATEST_JSON])
    return best in (JSON_TYPE, LATEST_JSON) and accept[best] > max(accept[t] for t in HTML_TYPES)


def _json(document: dict) -> Response:
    response = jsonify({"meta": {"api-version": "1.0"}, **document})
    response.headers["Content-Type"] = JSON_TYPE
    return response


def _negotiated(response: Response) -> Response:
    response.headers["Vary"] = "Accept"
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def _core_metadata_json(row: PackageFile) -> dict:
    digest = packages.wheel_metadata_sha256(row.file_sha256, row.file_name)
    if digest is None:
        return {}
    return {"core-metadata": {"sha256": digest}, "dist-info-metadata": {"sha256": digest}}


def _html(title: str, body: str) -> Response:
    page = ("<!DOCTYPE html>\n<html>\n<head>\n"
            '<meta name="pypi:repository-version" content="1.0">\n'
            f"<title>{escape(title)}</title>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n"
            f"{body}</body>\n</html>\n")
    return Response(page, 200, {"Content-Type": "text/html; charset=utf-8",
                                "Cache-Control": "private, no-cache"})


def _index(names: list[str]) -> Response:
    if _wants_json():
        return _negotiated(_json({"projects": [{"name": n} for n in names]}))
    body = "".join(f'<a href="{escape(n)}/">{escape(n)}</a><br>\n' for n in names)
    return _negotiated(_html("Simple index", body))


def _links(name: str, files: list[PackageFile]) -> Response:
    normalized = packages.normalize_pypi_name(name)
    if name != normalized:
        # PEP 503: a non-normalised name redirects to the normalised one.
        return redirect(f"{request.path.rstrip('/').rpartition('/')[0]}/{normalized}/", 301)
    if not files:
        error(404, "404 Package Not Found")
    entries = [(row, f"{external_url()}/api/v4/projects/{row.package.project_id}/packages/pypi/"
                     f"files/{row.file_sha256}/{row.file_name}") for row in files]
    if _wants_json():
        return _negotiated(_json({"name": normalized, "files": [
            {"filename": row.file_name, "url": url, "hashes": {"sha256": row.file_sha256},
             **({"requires-python": row.requires_python} if row.requires_python else {}),
             **_core_metadata_json(row)}
            for row, url in entries]}))
    links = []
    for row, url in entries:
        requires = (f' data-requires-python="{escape(row.requires_python)}"'
                    if row.requires_python else "")
        digest = packages.wheel_metadata_sha256(row.file_sha256, row.file_name)
        # PEP 714's name, and PEP 658's for pip versions that know only that one.
        metadata = (f' data-core-metadata="sha256={digest}" data-dist-info-metadata="sha256={digest}"'
                    if digest else "")
        links.append(f'<a href="{escape(url)}#sha256={row.file_sha256}"{requires}{metadata}>'
                     f'{escape(row.file_name)}</a><br>\n')
    return _negotiated(_html(f"Links for {normalized}", "".join(links)))

