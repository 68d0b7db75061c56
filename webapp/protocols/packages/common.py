"""What the package registries share: credentials, the project from `:id`, answers."""
from typing import NoReturn, Optional
from urllib.parse import unquote

from flask import Blueprint, abort, current_app, jsonify, request, send_file

from ...models import Group, PackageFile, Project
from ...services import accounts, package_storage
from ...services.credentials import DEPLOY_TOKEN, PERSONAL_ACCESS_TOKEN, Door
from ...services.errors import DomainError, NotFound, Unauthenticated
from ...services.policy import Action, Principal, authorize, can, visible
from ..auth import REALM, authenticate

bp = Blueprint("packages_api", __name__)

# pip, twine and curl send basic auth (a deploy token with its own username, or a user's
# password); npm a Bearer token; generic and Maven clients a `Deploy-Token` or
# `PRIVATE-TOKEN` header.
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


def error_response(status: int, message: str, **headers):
    """GitLab's JSON error shape (`error` carries the reason for npm and humans)."""
    titles = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden",
              404: "Not Found", 413: "Payload Too Large", 507: "Insufficient Storage"}
    body = {"message": f"{status} {titles.get(status, '')}".strip(), "error": message}
    if status == 404:
        body["message"] = message if message.startswith("404") else "404 Not Found"
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response


def error(status: int, message: str, **headers) -> NoReturn:
    """Stop with GitLab's JSON error shape."""
    abort(error_response(status, message, **headers))


@bp.errorhandler(DomainError)
def _refused(exc: DomainError):
    """Every refusal in the packages' JSON shape; 401 asks clients for credentials."""
    if isinstance(exc, Unauthenticated):
        return error_response(401, str(exc) or "HTTP Basic: Access denied",
                              **{"WWW-Authenticate": f'Basic realm="{REALM}"'})
    if isinstance(exc, NotFound):
        return error_response(404, str(exc) if str(exc).startswith("404")
                              else "404 Project Not Found")
    return error_response(exc.status, str(exc) or "forbidden")


def project_for(action: Action, ref: str) -> tuple[Project, Principal]:
    """Authenticate, find the project from `:id`, and check `action` on it; or stop."""
    principal = authenticate(DOOR)
    ref = ref_from_uri("/api/v4/projects/", ref)
    project = authorize(principal, action, accounts.project_by_ref(ref))
    return project, principal


def group_for(ref: str) -> tuple[Group, Principal, list[Project]]:
    """Authenticate, find the group, and list its projects (subgroups too) readable here."""
    principal = authenticate(DOOR)
    ref = ref_from_uri("/api/v4/groups/", ref)
    group = accounts.group_by_ref(ref)
    if group is None or not visible(principal, group):
        if principal.is_anonymous:
            raise Unauthenticated("authentication required")
        raise NotFound("404 Group Not Found")
    projects = [p for p in _subtree_projects(group) if can(principal, Action.READ_PACKAGE, p)]
    if not projects and principal.is_anonymous:
        raise Unauthenticated("authentication required")
    return group, principal, projects


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
    if not path.is_file():
        current_app.logger.error("package file %s missing at %s", row.id, path)
        error(404, "404 Package File Not Found")
    response = send_file(path, mimetype=mimetype, as_attachment=True,
                         download_name=row.file_name, etag=row.file_sha256,
                         last_modified=row.created_at, conditional=True, max_age=0)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def external_url() -> str:
    return current_app.config["EXTERNAL_URL"]

