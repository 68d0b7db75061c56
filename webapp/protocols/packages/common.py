"""What the package registries share: credentials, the project from `:id`, answers.

Each format is one module (generic, pypi, npm, maven) that adds its routes to `bp` and
declares a `PackageFormat`: its stored `package_type`, the credential kinds it accepts
and the function that answers errors in its wire shape. Everything else (the
credential chain, the policy, project/group/instance resolution, storage) is here or in
services/packages.py and services/package_storage.py, so a new format touches no other.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, NoReturn, Optional
from urllib.parse import quote, unquote

from flask import Blueprint, Response, abort, current_app, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from ...models import Group, PackageFile, Project
from ...services import accounts, nginx, package_storage, packages
from ...services.credentials import DEPLOY_TOKEN, PERSONAL_ACCESS_TOKEN, Door
from ...services.errors import CredentialRefused, DomainError, NotFound, Unauthenticated
from ...services.policy import Action, Principal, authorize, can, visible
from .. import spool
from ..auth import REALM, authenticate

bp = Blueprint("packages_api", __name__)

# pip, twine, mvn and curl send basic auth (a deploy token with its own username, or a
# user's password); npm a Bearer token; generic and Maven clients a `Deploy-Token` or
# `PRIVATE-TOKEN` header. `JOB-TOKEN` is recognised and refused by the chain.
DOOR = Door("packages", passwords=True, basic_tokens=frozenset({DEPLOY_TOKEN}),
            bare_tokens=frozenset({DEPLOY_TOKEN, PERSONAL_ACCESS_TOKEN}))


def raw_segment(prefix: str) -> Optional[str]:
    """The still-encoded path segment after `prefix`, read from the raw request URI.

    werkzeug decodes %2F before routing, so `tanuki%2Fawesome_project` would look
    like two segments; the raw URI (gunicorn's RAW_URI, werkzeug's REQUEST_URI)
    says where `:id` really ends.
    """
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if not raw:
        return None
    path = raw.split("?", 1)[0]
    if "://" in path:  # an absolute-form request target
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    if not path.startswith(prefix):
        return None
    return path[len(prefix):]


def ref_from_uri(prefix: str, routed: str) -> str:
    """The `:id` as sent: one raw segment, URL-decoded (`routed` is werkzeug's guess)."""
    rest = raw_segment(prefix)
    if rest is None:
        return routed
    ref = unquote(rest.split("/", 1)[0])
    if routed != ref and routed.startswith(ref + "/"):
        return routed  # a full path sent with its slashes unencoded: take it as meant
    return ref


def error(status: int, message: str, **headers) -> NoReturn:
    """Stop with GitLab's JSON error shape (`error` carries the reason for npm and humans)."""
    titles = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden",
              404: "Not Found", 413: "Payload Too Large", 507: "Insufficient Storage"}
    body = {"message": f"{status} {titles.get(status, '')}".strip(), "error": message}
    if status == 404:
        body["message"] = message if message.startswith("404") else "404 Not Found"
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    abort(response)


@dataclass(frozen=True)
class PackageFormat:
    """What a format module declares; the shared doors below read it."""

    package_type: str
    # The credentials the format's clients send, through the one authentication chain.
    door: Door = DOOR
    # Stops the request with (status, message, **headers) in the format's wire shape.
    error: Callable[..., NoReturn] = error


JSON_API = PackageFormat("json")  # the default for callers that name no format


def challenge_headers() -> dict[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{REALM}"'}


def refuse(exc: DomainError, fmt: PackageFormat = JSON_API, what: str = "Project") -> NoReturn:
    """Answer a domain error in the format's wire shape; 401 asks for credentials.

    A credential of a kind no package door takes (a CI job token) gets no challenge, so
    clients show the reason instead of retrying with a password.
    """
    if isinstance(exc, Unauthenticated):
        headers = {} if isinstance(exc, CredentialRefused) else challenge_headers()
        fmt.error(401, str(exc) or "HTTP Basic: Access denied", **headers)
    if isinstance(exc, NotFound):
        text = str(exc)
        fmt.error(404, text if text.startswith("404") else f"404 {what} Not Found")
    fmt.error(exc.status, str(exc) or "forbidden")


@contextmanager
def body_errors(fmt: PackageFormat = JSON_API) -> Iterator[None]:
    """Stop in the format's wire shape when the body is too large (413; the connection
    closes, so the rest is never read) or ends before its announced length (400)."""
    try:
        yield
    except package_storage.TooLarge as exc:
        fmt.error(413, str(exc), Connection="close")
    except package_storage.Incomplete as exc:
        fmt.error(400, f"upload incomplete: {exc}")


def receive_body(fmt: PackageFormat = JSON_API, algorithms=()) -> package_storage.Upload:
    """The request body as a finished upload (streamed, or spooled by nginx), or stop."""
    with body_errors(fmt):
        return spool.upload(algorithms)


@bp.errorhandler(DomainError)
def _refused(exc: DomainError):
    """Refusals no format caught: GitLab's JSON shape."""
    try:
        refuse(exc)
    except HTTPException as stop:
        return stop.get_response()


def project_for(action: Action, ref: str, fmt: PackageFormat = JSON_API
                ) -> tuple[Project, Principal]:
    """Authenticate, find the project from `:id`, and check `action` on it; or stop.

    The read transaction ends before returning: the caller may now read an upload
    body or stream a file without holding a pooled connection.
    """
    try:
        principal = authenticate(fmt.door)
        ref = ref_from_uri("/api/v4/projects/", ref)
        project = authorize(principal, action, accounts.project_by_ref(ref))
    except DomainError as exc:
        refuse(exc, fmt)
    packages.end_reads()
    return project, principal


def group_for(ref: str, fmt: PackageFormat = JSON_API
              ) -> tuple[Group, Principal, list[Project]]:
    """Authenticate, find the group, and list its projects (subgroups too) readable here."""
    try:
        principal = authenticate(fmt.door)
        ref = ref_from_uri("/api/v4/groups/", ref)
        group = accounts.group_by_ref(ref)
        if group is None or not visible(principal, group):
            authorize(principal, Action.READ_PACKAGE, None)
        projects = [p for p in _subtree_projects(group) if can(principal, Action.READ_PACKAGE, p)]
        if not projects and principal.is_anonymous:
            raise Unauthenticated("authentication required")
    except DomainError as exc:
        refuse(exc, fmt, "Group")
    packages.end_reads()
    return group, principal, projects


def instance_for(fmt: PackageFormat = JSON_API) -> tuple[Principal, list[Project]]:
    """Authenticate, and list every project whose packages these credentials can read."""
    try:
        principal = authenticate(fmt.door)
    except DomainError as exc:
        refuse(exc, fmt)
    projects = [p for p in accounts.visible_projects(principal)
                if can(principal, Action.READ_PACKAGE, p)]
    packages.end_reads()
    return principal, projects


def _subtree_projects(group: Group) -> list[Project]:
    found, stack = [], [group]
    while stack:
        node = stack.pop()
        found.extend(node.projects)
        stack.extend(node.children)
    return found


def send_package_file(row: PackageFile, mimetype: str = "application/octet-stream"):
    """Stream a stored file from disk (sendfile under gunicorn), with ETag and length."""
    path = package_storage.content_path(row.file_sha256)
    packages.end_reads()  # the row is loaded; nothing is held while the file streams
    if not path.is_file():
        current_app.logger.error("package file %s missing at %s", row.id, path)
        error(404, "404 Package File Not Found")
    if nginx.in_front(request):
        return _accel_redirect(row, mimetype)
    response = send_file(path, mimetype=mimetype, as_attachment=True,
                         download_name=row.file_name, etag=row.file_sha256,
                         last_modified=row.created_at, conditional=True, max_age=0)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def _accel_redirect(row: PackageFile, mimetype: str) -> Response:
    """Hand the authorized download to nginx, which serves it from disk (ranges included)."""
    response = Response(status=200, mimetype=mimetype)
    response.set_etag(row.file_sha256)
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(row.file_name)}"
    response.headers["Cache-Control"] = "private, no-cache"
    if response.make_conditional(request).status_code == 304:
        return response
    response.headers["X-Accel-Redirect"] = nginx.accel_path(row.file_sha256)
    return response


def external_url() -> str:
    return current_app.config["EXTERNAL_URL"]

