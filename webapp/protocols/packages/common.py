"""What the package registries share: credentials, the project from `:id`, answers."""
from typing import NoReturn, Optional
from urllib.parse import quote, unquote

from flask import Blueprint, Response, abort, current_app, jsonify, request, send_file

from ...models import Group, PackageFile, Project
from ...services import accounts, credentials, nginx, package_storage
from ...services.policy import Action, Decision, Principal, can, visible
from ..auth import REALM, BadCredentials, bearer_token, principal_from_basic

bp = Blueprint("packages_api", __name__)


# How a bare secret may arrive, and which token kinds it may be, tried in order.
SECRET_RESOLVERS = {
    "Deploy-Token": (credentials.from_deploy_token_secret,),
    "Bearer": (credentials.from_deploy_token_secret, credentials.from_personal_access_token),
    "Private-Token": (credentials.from_personal_access_token,),
}


def request_principal() -> Principal:
    """Resolve the request's credentials into one Principal.

    - `Deploy-Token: <secret>` (generic packages): a deploy token, no username.
    - `Authorization: Bearer <secret>` (npm's `_authToken`): a deploy token or a
      personal access token; `Private-Token: <secret>`: a personal access token.
    - `Authorization: Basic` (twine, pip, curl -u): a deploy token with its own
      username, or a user and password.
    Credentials that were sent but match nothing raise BadCredentials (401).
    """
    for header in SECRET_RESOLVERS:
        secret = bearer_token(request) if header == "Bearer" else request.headers.get(header)
        if secret is not None:
            return _by_secret(secret.strip(), SECRET_RESOLVERS[header])
    return principal_from_basic(request)


def _by_secret(secret: str, resolvers) -> Principal:
    for resolve in resolvers:
        principal = resolve(secret)
        if principal is not None:
            return principal
    raise BadCredentials("unknown, revoked or expired token")


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
              404: "Not Found", 413: "Payload Too Large"}
    body = {"message": f"{status} {titles.get(status, '')}".strip(), "error": message}
    if status == 404:
        body["message"] = message if message.startswith("404") else "404 Not Found"
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    abort(response)


def deny(decision: Decision, what: str = "Project") -> NoReturn:
    if decision.status == 401:
        error(401, "authentication required",
              **{"WWW-Authenticate": f'Basic realm="{REALM}"'})
    if decision.status == 404:
        error(404, f"404 {what} Not Found")
    error(decision.status, decision.reason or "forbidden")


def authorized_principal() -> Principal:
    try:
        return request_principal()
    except BadCredentials:
        # The same answer as no credentials: clients prompt or retry, nothing leaks.
        error(401, "HTTP Basic: Access denied",
              **{"WWW-Authenticate": f'Basic realm="{REALM}"'})


def project_for(action: Action, ref: str) -> tuple[Project, Principal]:
    """Authenticate, find the project from `:id`, and check `action` on it; or stop."""
    principal = authorized_principal()
    ref = ref_from_uri("/api/v4/projects/", ref)
    project = accounts.project_by_ref(ref)
    decision = can(principal, action, project)
    if not decision:
        deny(decision)
    credentials.record_use(principal, request.remote_addr)
    return project, principal


def group_for(ref: str) -> tuple[Group, Principal, list[Project]]:
    """Authenticate, find the group, and list its projects (subgroups too) readable here."""
    principal = authorized_principal()
    ref = ref_from_uri("/api/v4/groups/", ref)
    group = accounts.group_by_ref(ref)
    if group is None or not visible(principal, group):
        deny(can(principal, Action.READ_PACKAGE, None), "Group")
    projects = [p for p in _subtree_projects(group) if can(principal, Action.READ_PACKAGE, p)]
    if not projects and principal.is_anonymous:
        deny(Decision(False, 401))
    credentials.record_use(principal, request.remote_addr)
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

