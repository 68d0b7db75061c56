"""GitLab's REST API v4, the deploy-token part, for python-gitlab, Terraform and curl.

Callers authenticate with a personal access token (`PRIVATE-TOKEN: glpat-…` or
`Authorization: Bearer glpat-…`). Deploy tokens, passwords and anything else get 401:
a deploy token is a machine credential for git, the registry and packages, never for
managing tokens.

`:id` is a number or a URL-encoded full path (`tanuki%2Fawesome_project`). Servers
decode %2F before routing, so the id arrives with its slashes and is matched by a
`path` converter in front of a fixed suffix.
"""
from datetime import date, datetime, timezone
from typing import Any, Optional
from urllib.parse import quote

from flask import Blueprint, current_app, g, jsonify, request

from ..extensions import db
from ..models import DeployToken, Group, Project, User, iso8601 as iso, utcnow
from ..services import accounts, credentials, deploy_tokens
from ..services.errors import Invalid, NotFound
from ..services.policy import ANONYMOUS, Action, Principal, can, visible
from .auth import bearer_token
from .pagination import paginate

bp = Blueprint("api_v4", __name__, url_prefix="/api/v4")

# What /api/v4/version reports: the GitLab API level these endpoints follow.
GITLAB_VERSION = "17.6.0"
READ_METHODS = {"GET", "HEAD", "OPTIONS"}


class ApiError(Exception):
    """An answer in GitLab's error shape: {"message": …} or {"error": …}."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(status)
        self.status, self.body = status, body


@bp.errorhandler(ApiError)
def _api_error(error: ApiError):
    return jsonify(error.body), error.status


def _unauthorized() -> ApiError:
    return ApiError(401, {"message": "401 Unauthorized"})


def _forbidden() -> ApiError:
    return ApiError(403, {"message": "403 Forbidden"})


def _not_found(what: str = "") -> ApiError:
    return ApiError(404, {"message": f"404 {what + ' ' if what else ''}Not Found"})


# ---------------------------------------------------------------- authentication

def _personal_access_token_sent() -> Optional[str]:
    """The secret from PRIVATE-TOKEN, a bearer header or `private_token`; None if absent."""
    return (request.headers.get("PRIVATE-TOKEN") or bearer_token(request)
            or request.args.get("private_token") or None)


def caller() -> Principal:
    """The request's principal: a personal access token's user, or anonymous.

    Any other credential (basic auth, Deploy-Token, Job-Token, a deploy token sent as a
    bearer token or PRIVATE-TOKEN) is refused with 401 rather than ignored.
    """
    if "api_principal" in g:
        return g.api_principal
    secret = _personal_access_token_sent()
    if secret is not None:
        principal = credentials.from_personal_access_token(secret)
        if principal is None:
            raise _unauthorized()
        credentials.record_use(principal, request.remote_addr)
    elif request.headers.get("Authorization") or request.headers.get("Deploy-Token") \
            or request.headers.get("Job-Token"):
        raise _unauthorized()
    else:
        principal = ANONYMOUS
    g.api_principal = principal
    return principal


@bp.before_request
def _authenticate():
    principal = caller()
    # read_api allows reading only; GitLab checks the scope before it looks anything up.
    if request.method not in READ_METHODS and principal.kind == "personal_access_token" \
            and "api" not in principal.scopes:
        raise _forbidden()


def signed_in() -> Principal:
    principal = caller()
    if principal.is_anonymous:
        raise _unauthorized()
    return principal


def _actor(principal: Principal) -> User:
    return db.session.get(User, principal.user_id)


# ---------------------------------------------------------------- JSON shapes

def token_json(token: DeployToken, now: datetime, secret: Optional[str] = None) -> dict:
    body = {"id": token.id, "name": token.name, "username": token.username,
            "expires_at": iso(token.expires_at), "scopes": token.scopes,
            "revoked": token.revoked, "expired": token.expired_at(now)}
    if secret is not None:
        body["token"] = secret
    return body


def _external() -> str:
    return current_app.config["EXTERNAL_URL"]


def group_json(group: Group) -> dict:
    return {"id": group.id, "name": group.name, "path": group.path,
            "full_path": group.full_path,
            "full_name": " / ".join(g.name for g in reversed(group.ancestors())),
            "description": "", "parent_id": group.parent_id, "avatar_url": None,
            "created_at": iso(group.created_at),
            "web_url": f"{_external()}/groups/{group.full_path}"}


def namespace_json(group: Group) -> dict:
    return {"id": group.id, "name": group.name, "path": group.path, "kind": "group",
            "full_path": group.full_path, "parent_id": group.parent_id, "avatar_url": None,
            "web_url": f"{_external()}/groups/{group.full_path}"}


def project_json(project: Project) -> dict:
    group = project.group
    return {
        "id": project.id, "name": project.name, "path": project.path,
        "name_with_namespace": " / ".join(
            [g.name for g in reversed(group.ancestors())] + [project.name]),
        "path_with_namespace": project.full_path, "description": None,
        "visibility": project.visibility, "default_branch": None,
        "created_at": iso(project.created_at),
        "web_url": f"{_external()}/{project.full_path}",
        "http_url_to_repo": f"{_external()}/{project.full_path}.git",
        "namespace": namespace_json(group),
    }


def user_json(user: User) -> dict:
    return {"id": user.id, "username": user.username, "name": user.username,
            "state": "active", "locked": False, "bot": False, "avatar_url": None,
            "web_url": f"{_external()}/{user.username}", "email": user.email,
            "is_admin": user.is_admin, "created_at": iso(user.created_at)}


# ---------------------------------------------------------------- lookups

# Route kind → (lookup by `:id`, name in the 404 message).
OWNERS = {"projects": (accounts.project_by_ref, "Project"),
          "groups": (accounts.group_by_ref, "Group")}


def _owner(kind: str, ref: str, principal: Principal):
    """The project or group at `ref`, or 404 when it does not exist or is not visible."""
    lookup, label = OWNERS[kind]
    target = lookup(ref)
    if target is None or not visible(principal, target):
        raise _not_found(label)
    return target


def _managed_owner(kind: str, ref: str):
    """The owner whose deploy tokens the caller may manage (Maintainer+ or admin)."""
    principal = signed_in()
    target = _owner(kind, ref, principal)
    decision = can(principal, Action.MANAGE_DEPLOY_TOKENS, target)
    if not decision:
        raise _forbidden() if decision.status == 403 else _not_found(OWNERS[kind][1])
    return principal, target


def _list_path(kind: str, ref: str) -> str:
    # Keep the id as the client sent it (encoded) in the Link header.
    return f"{bp.url_prefix}/{kind}/{quote(ref, safe='')}/deploy_tokens"


def _active_filter() -> Optional[bool]:
    raw = request.args.get("active")
    if raw is None or raw == "":
        return None
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "t"):
        return True
    if value in ("false", "0", "no", "f"):
        return False
    raise ApiError(400, {"error": "active is invalid"})


def _paged_tokens(owner, path: Optional[str] = None):
    now = utcnow()
    query = deploy_tokens.select_tokens(owner, active=_active_filter(), now=now,
                                        newest_first=False)
    tokens, headers = paginate(query, path=path)
    response = jsonify([token_json(t, now) for t in tokens])
    response.headers.update(headers)
    return response


# ---------------------------------------------------------------- create parameters

def _params() -> dict[str, Any]:
    """Query string and body merged, as Grape does; `name[]` keys become lists.

    The body is a JSON object (python-gitlab, Terraform) or form-encoded (curl -d).
    """
    params: dict[str, Any] = {}
    sources = [request.args] + ([] if request.is_json else [request.form])
    for source in sources:
        for key in source.keys():
            values = source.getlist(key)
            if key.endswith("[]"):
                params[key[:-2]] = values
            else:
                params[key] = values if len(values) > 1 else values[0]
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, {"error": "The request body must be a JSON object"})
        params.update(body)
    return params


def _string(params: dict, name: str) -> Optional[str]:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, {"error": f"{name} is invalid"})
    return value


def _scopes(raw: Any) -> list[str]:
    """An array of scope names, or one comma-separated string of them."""
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ApiError(400, {"error": "scopes is invalid"})
    return [s.strip() for item in items for s in item.split(",") if s.strip()]


def _expiry(raw: Optional[str]) -> Optional[datetime]:
    """An ISO 8601 date (the token stops at 00:00 UTC that day) or datetime (UTC if naive)."""
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    try:
        if "T" not in raw and " " not in raw:
            return deploy_tokens.expiry_from_date(date.fromisoformat(raw))
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, {"error": "expires_at is invalid"})
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


# ---------------------------------------------------------------- endpoints

@bp.get("/version")
@bp.get("/metadata")  # the newer name; Terraform's provider asks for it first
def version():
    signed_in()
    return jsonify(version=GITLAB_VERSION, revision="gatehouse", enterprise=False,
                   kas={"enabled": False, "externalUrl": None, "version": None})


@bp.get("/user")
def current_user():
    return jsonify(user_json(_actor(signed_in())))


@bp.get("/deploy_tokens")
def all_deploy_tokens():
    """Every deploy token of the instance: administrators only."""
    if not signed_in().is_admin:
        raise _forbidden()
    return _paged_tokens(None)


def show_owner(kind: str, ref: str):
    target = _owner(kind, ref, caller())
    return jsonify(project_json(target) if kind == "projects" else group_json(target))


def list_tokens(kind: str, ref: str):
    _, owner = _managed_owner(kind, ref)
    return _paged_tokens(owner, path=_list_path(kind, ref))


def create_token(kind: str, ref: str):
    principal, owner = _managed_owner(kind, ref)
    params = _params()
    missing = [name for name in ("name", "scopes") if params.get(name) is None]
    if missing:
        raise ApiError(400, {"error": ", ".join(f"{name} is missing" for name in missing)})
    try:
        token, secret = deploy_tokens.create(
            owner, name=_string(params, "name"), scopes=_scopes(params["scopes"]),
            username=_string(params, "username"),
            expires_at=_expiry(_string(params, "expires_at")),
            actor=_actor(principal), ip=request.remote_addr)
    except Invalid as error:
        raise ApiError(400, {"message": error.errors})
    return jsonify(token_json(token, utcnow(), secret)), 201, {"Cache-Control": "no-store"}


def show_token(kind: str, ref: str, token_id: int):
    _, owner = _managed_owner(kind, ref)
    try:
        token = deploy_tokens.get_for(owner, token_id)
    except NotFound:
        raise _not_found("Deploy Token")
    return jsonify(token_json(token, utcnow()))


def delete_token(kind: str, ref: str, token_id: int):
    principal, owner = _managed_owner(kind, ref)
    try:
        deploy_tokens.destroy(owner, token_id, actor=_actor(principal), ip=request.remote_addr)
    except NotFound:
        raise _not_found("Deploy Token")
    return "", 204


for _kind in OWNERS:
    _tokens = f"/{_kind}/<path:ref>/deploy_tokens"
    bp.add_url_rule(f"/{_kind}/<path:ref>", f"{_kind}_show", show_owner,
                    methods=["GET"], defaults={"kind": _kind})
    bp.add_url_rule(_tokens, f"{_kind}_list_deploy_tokens", list_tokens,
                    methods=["GET"], defaults={"kind": _kind})
    bp.add_url_rule(_tokens, f"{_kind}_create_deploy_token", create_token,
                    methods=["POST"], defaults={"kind": _kind})
    bp.add_url_rule(f"{_tokens}/<int:token_id>", f"{_kind}_show_deploy_token", show_token,
                    methods=["GET"], defaults={"kind": _kind})
    bp.add_url_rule(f"{_tokens}/<int:token_id>", f"{_kind}_delete_deploy_token", delete_token,
                    methods=["DELETE"], defaults={"kind": _kind})
