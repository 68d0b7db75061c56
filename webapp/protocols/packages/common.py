"""What the package registries share: credentials, the project from `:id`, answers.

Each format is one module (generic, pypi, npm, maven) that adds its routes to `bp` and
declares a `PackageFormat`: its stored `package_type`, the credential kinds it accepts
and the function that answers errors in its wire shape. Everything else (the
credential chain, the policy, project/group/instance resolution, storage) is here or in
services/packages.py and services/package_storage.py, so a new format touches no other.
"""
from dataclasses import dataclass
from typing import Callable, NoReturn, Optional
from urllib.parse import unquote

from flask import Blueprint, abort, current_app, jsonify, request, send_file

from ...models import Group, PackageFile, Project
from ...services import accounts, credentials, package_storage, packages
from ...services.policy import ANONYMOUS, Action, Decision, Principal, can, visible
from ..auth import REALM, BadCredentials, bearer_token, principal_from_basic

bp = Blueprint("packages_api", __name__)


# How a bare secret may arrive, and which token kinds it may be, tried in order.
SECRET_RESOLVERS = {
    "Deploy-Token": (credentials.from_deploy_token_secret,),
    "Bearer": (credentials.from_deploy_token_secret, credentials.from_personal_access_token),
    "Private-Token": (credentials.from_personal_access_token,),
    # GitLab's CI job token: recognised so that it is refused with a reason, not
    # mistaken for no credentials (Gatehouse has no CI jobs, hence no job tokens).
    "Job-Token": (),
}
# Every credential kind a package door may accept: the headers above, and basic auth.
ALL_KINDS = (*SECRET_RESOLVERS, "Basic")


class JobTokenRefused(BadCredentials):
    """A `Job-Token` header: understood, and never accepted."""


def request_principal(accepts: tuple[str, ...] = ALL_KINDS) -> Principal:
    """Resolve the request's credentials into one Principal.

    - `Deploy-Token: <secret>` (generic packages, Maven): a deploy token, no username.
    - `Authorization: Bearer <secret>` (npm's `_authToken`): a deploy token or a
      personal access token; `Private-Token: <secret>`: a personal access token.
    - `Job-Token: <secret>`: refused (JobTokenRefused).
    - `Authorization: Basic` (twine, pip, mvn, curl -u): a deploy token with its own
      username, or a user and password.
    Only the kinds in `accepts` are looked at. Credentials that were sent but match
    nothing raise BadCredentials (401).
    """
    for header in SECRET_RESOLVERS:
        if header not in accepts:
            continue
        secret = bearer_token(request) if header == "Bearer" else request.headers.get(header)
        if secret is not None:
            if header == "Job-Token":
                raise JobTokenRefused("CI job tokens are not supported by Gatehouse: "
                                      "use a deploy token or a personal access token")
            return _by_secret(secret.strip(), SECRET_RESOLVERS[header])
    if "Basic" not in accepts:
        return ANONYMOUS
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


@dataclass(frozen=True)
class PackageFormat:
    """What a format module declares; the shared doors below read it."""

    package_type: str
    # Credential kinds the format's clients send (keys of SECRET_RESOLVERS, "Basic").
    accepts: tuple[str, ...] = ALL_KINDS
    # Stops the request with (status, message, **headers) in the format's wire shape.
    error: Callable[..., NoReturn] = error


JSON_API = PackageFormat("json")  # the default for callers that name no format


def challenge_headers() -> dict[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{REALM}"'}


def deny(decision: Decision, what: str = "Project", fmt: PackageFormat = JSON_API) -> NoReturn:
    if decision.status == 401:
        fmt.error(401, "authentication required", **challenge_headers())
    if decision.status == 404:
        fmt.error(404, f"404 {what} Not Found")
    fmt.error(decision.status, decision.reason or "forbidden")


def authorized_principal(fmt: PackageFormat = JSON_API) -> Principal:
    try:
        return request_principal(fmt.accepts)
    except JobTokenRefused as exc:
        # Not "wrong credentials": no challenge, so clients show the reason instead
        # of retrying with a password.
        fmt.error(401, str(exc))
    except BadCredentials:
        # The same answer as no credentials: clients prompt or retry, nothing leaks.
        fmt.error(401, "HTTP Basic: Access denied", **challenge_headers())


def project_for(action: Action, ref: str, fmt: PackageFormat = JSON_API
                ) -> tuple[Project, Principal]:
    """Authenticate, find the project from `:id`, and check `action` on it; or stop.

    The read transaction ends before returning: the caller may now read an upload
    body or stream a file without holding a pooled connection.
    """
    principal = authorized_principal(fmt)
    ref = ref_from_uri("/api/v4/projects/", ref)
    project = accounts.project_by_ref(ref)
    decision = can(principal, action, project)
    if not decision:
        deny(decision, fmt=fmt)
    packages.end_reads()  # before record_use, whose commit would expire the loaded rows
    credentials.record_use(principal, request.remote_addr)
    return project, principal


def group_for(ref: str, fmt: PackageFormat = JSON_API
              ) -> tuple[Group, Principal, list[Project]]:
    """Authenticate, find the group, and list its projects (subgroups too) readable here."""
    principal = authorized_principal(fmt)
    ref = ref_from_uri("/api/v4/groups/", ref)
    group = accounts.group_by_ref(ref)
    if group is None or not visible(principal, group):
        deny(can(principal, Action.READ_PACKAGE, None), "Group", fmt)
    projects = [p for p in _subtree_projects(group) if can(principal, Action.READ_PACKAGE, p)]
    if not projects and principal.is_anonymous:
        deny(Decision(False, 401), fmt=fmt)
    packages.end_reads()  # before record_use, whose commit would expire the loaded rows
    credentials.record_use(principal, request.remote_addr)
    return group, principal, projects


def instance_for(fmt: PackageFormat = JSON_API) -> tuple[Principal, list[Project]]:
    """Authenticate, and list every project whose packages these credentials can read."""
    principal = authorized_principal(fmt)
    projects = [p for p in accounts.visible_projects(principal)
                if can(principal, Action.READ_PACKAGE, p)]
    packages.end_reads()  # before record_use, whose commit would expire the loaded rows
    credentials.record_use(principal, request.remote_addr)
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
    response = send_file(path, mimetype=mimetype, as_attachment=True,
                         download_name=row.file_name, etag=row.file_sha256,
                         last_modified=row.created_at, conditional=True, max_age=0)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def external_url() -> str:
    return current_app.config["EXTERNAL_URL"]

