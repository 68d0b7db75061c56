"""GitLab's REST API v4, the deploy-token part, for python-gitlab, Terraform and curl.

Callers authenticate with a personal access token (`PRIVATE-TOKEN: glpat-…`,
`Authorization: Bearer glpat-…` or `?private_token=`). Deploy tokens, passwords and
anything else get 401: a deploy token is a machine credential for git, the registry and
packages, never for managing tokens.

`:id` is a number or a URL-encoded full path (`tanuki%2Fawesome_project`). Servers
decode %2F before routing, so the id arrives with its slashes and is matched by a
`path` converter in front of a fixed suffix.
"""
import re
from datetime import date, datetime, timezone
from typing import Any, Optional
from urllib.parse import quote

from flask import Blueprint, current_app, g, jsonify, request

from ..extensions import db
from ..models import (DeployToken, Group, PersonalAccessToken, Project, User, iso8601 as iso,
                      utcnow)
from ..services import accounts, audit, container_registry, deploy_tokens, secret_tokens, webhooks
from ..services.credentials import PERSONAL_ACCESS_TOKEN, Door
from ..services.deploy_tokens import DEPLOY_TOKENS
from ..services.personal_access_tokens import PERSONAL_ACCESS_TOKENS
from ..services.errors import (AddressNotAllowed, Banned, DomainError, Forbidden, Invalid,
                               NotFound, Unauthenticated)
from ..services.policy import INSTANCE, Action, Principal, authorize, visible
from .auth import authenticate
from .packages.common import raw_segment
from .pagination import headers_for, page_params, paginate

bp = Blueprint("api_v4", __name__, url_prefix="/api/v4")
DOOR = Door("api", bare_tokens=frozenset({PERSONAL_ACCESS_TOKEN}))

# What /api/v4/version reports: the GitLab API level these endpoints follow.
GITLAB_VERSION = "17.6.0"
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
# Every answer that carries a secret: no cache, browser or proxy, may keep it.
NO_STORE = {"Cache-Control": "no-store"}


class ApiError(Exception):
    """An answer in GitLab's error shape: {"message": …} or {"error": …}."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(status)
        self.status, self.body = status, body


@bp.errorhandler(ApiError)
def _api_error(error: ApiError):
    return jsonify(error.body), error.status


class UnknownRoute(NotFound):
    """No route of ours serves this URL."""


@bp.errorhandler(container_registry.Unavailable)
def _registry_unavailable(error):
    return jsonify(message=str(error)), 503


@bp.errorhandler(DomainError)
def _refused(error: DomainError):
    """Domain errors in GitLab's words; a reason is added only where it helps the caller."""
    if isinstance(error, Invalid):
        return jsonify(message=error.errors), 400
    if isinstance(error, Unauthenticated):
        return jsonify(message="401 Unauthorized"), 401
    if isinstance(error, NotFound):
        if isinstance(error, UnknownRoute):
            return jsonify(unknown_route_body()), 404
        text = str(error)
        return jsonify(message=text if text.startswith("404") else "404 Not Found"), 404
    if isinstance(error, Forbidden):
        # A ban or an address refusal says so; a policy refusal stays GitLab's bare 403.
        reason = f" - {error}" if isinstance(error, (Banned, AddressNotAllowed)) else ""
        return jsonify(message=f"403 Forbidden{reason}"), 403
    return jsonify(message=f"{error.status} {error}"), error.status


def _not_found(what: str = "") -> NotFound:
    return NotFound(f"404 {what + ' ' if what else ''}Not Found")


# ---------------------------------------------------------------- authentication

def caller() -> Principal:
    """The request's principal (a personal access token's user, or anonymous), once."""
    if "api_principal" not in g:
        g.api_principal = authenticate(DOOR)
    return g.api_principal


# Package formats GitLab serves that Gatehouse does not: a 404 under their URLs says so.
UNSERVED_FORMATS = ("conan", "nuget", "composer", "go", "helm", "rubygems", "debian",
                    "rpm", "terraform", "ml_models", "cargo", "conda")
UNSERVED_RE = re.compile(r"^/api/v4/(?:.+/)?packages/(" + "|".join(UNSERVED_FORMATS) + r")(?:/|$)")


def unknown_route_body() -> dict:
    """The 404 of a URL under /api/v4 that no route serves, whatever the credentials."""
    body = {"message": "404 Not Found"}
    unserved = UNSERVED_RE.match(request.path)
    if unserved:
        body["error"] = f"{unserved.group(1)} packages are not served by Gatehouse"
    return body


def unknown_route(allowed_methods=()) -> bool:
    """Whether this URL only looked like `/projects/:id` (or `/groups/:id`).

    `/projects/1/deploy_keys` reaches the `/projects/<path:ref>` route with ref
    "1/deploy_keys"; a real `:id` is one segment (a full path comes URL-encoded). With
    another method than GET the router answers 405 for the same reason.
    """
    if allowed_methods and not set(allowed_methods) <= READ_METHODS:
        return False
    for kind in OWNERS:
        rest = raw_segment(f"{bp.url_prefix}/{kind}/")
        if rest is not None:
            return "/" in rest.strip("/")
    return False


@bp.before_request
def _authenticate():
    if request.endpoint in ("api_v4.projects_show", "api_v4.groups_show") and unknown_route():
        # Not a route of ours, whatever the credentials: say so rather than 401 or a
        # "Project Not Found" for a project that exists.
        raise UnknownRoute("404 Not Found")
    # read_api allows reading only; GitLab checks the scope before it looks anything up.
    action = Action.API_READ if request.method in READ_METHODS else Action.API_WRITE
    authorize(caller(), action, INSTANCE)


def signed_in() -> Principal:
    principal = caller()
    if principal.is_anonymous:
        raise Unauthenticated("authentication required")
    return principal


def _actor(principal: Principal) -> User:
    return db.session.get(User, principal.user_id)


# ---------------------------------------------------------------- JSON shapes

def token_json(token: DeployToken, now: datetime, secret: Optional[str] = None) -> dict:
    body = {"id": token.id, "name": token.name, "username": token.username,
            "expires_at": iso(token.expires_at), "scopes": token.scopes,
            "revoked": token.revoked, "expired": token.expired_at(now),
            "allowed_ips": token.allowed_networks, **_grace_json(token, now)}
    if secret is not None:
        body["token"] = secret
    return body


def _grace_json(token, now: datetime) -> dict:
    """Gatehouse's addition: until when the secret before the last rotation works."""
    return {"previous_token_expires_at":
            iso(token.previous_expires_at) if token.in_grace_at(now) else None}


def pat_json(token: PersonalAccessToken, now: datetime, secret: Optional[str] = None) -> dict:
    """A personal access token in GitLab's shape (its expiry is a date there)."""
    body = {"id": token.id, "name": token.name, "revoked": token.revoked,
            "created_at": iso(token.created_at), "description": None, "scopes": token.scopes,
            "user_id": token.user_id, "last_used_at": iso(token.last_used_at),
            "active": token.active_at(now),
            "expires_at": token.expires_at.date().isoformat() if token.expires_at else None,
            "allowed_ips": token.allowed_networks, **_grace_json(token, now)}
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


def _owner_for(kind: str, ref: str, action: Action, principal: Optional[Principal] = None):
    """The signed-in caller and the project or group on which the policy lets it do `action`.

    A target the caller may not see is "404 Project (or Group) Not Found", as GitLab says.
    """
    principal = principal or signed_in()
    target = _owner(kind, ref, principal)
    try:
        return principal, authorize(principal, action, target)
    except NotFound:
        raise _not_found(OWNERS[kind][1])


def _list_path(kind: str, ref: str) -> str:
    # Keep the id as the client sent it (encoded) in the Link header.
    return f"{bp.url_prefix}/{kind}/{quote(ref, safe='')}/deploy_tokens"


def _active_filter() -> Optional[bool]:
    return _boolean(request.args, "active", None)


def _paged_tokens(owner, path: Optional[str] = None):
    now = utcnow()
    query = DEPLOY_TOKENS.select(owner, active=_active_filter(), now=now, newest_first=False)
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
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        # A far date with a negative offset lies past year 9999 in UTC: OverflowError.
        return moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise ApiError(400, {"error": "expires_at is invalid"})


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
    authorize(signed_in(), Action.LIST_ALL_DEPLOY_TOKENS, INSTANCE)
    return _paged_tokens(None)


def show_owner(kind: str, ref: str):
    target = _owner(kind, ref, caller())
    return jsonify(project_json(target) if kind == "projects" else group_json(target))


def list_tokens(kind: str, ref: str):
    _, owner = _owner_for(kind, ref, Action.MANAGE_DEPLOY_TOKENS)
    return _paged_tokens(owner, path=_list_path(kind, ref))


def create_token(kind: str, ref: str):
    principal, owner = _owner_for(kind, ref, Action.MANAGE_DEPLOY_TOKENS)
    params = _params()
    missing = [name for name in ("name", "scopes") if params.get(name) is None]
    if missing:
        raise ApiError(400, {"error": ", ".join(f"{name} is missing" for name in missing)})
    token, secret = deploy_tokens.create(
        owner, name=_string(params, "name"), scopes=_scopes(params["scopes"]),
        username=_string(params, "username"),
        expires_at=_expiry(_string(params, "expires_at")),
        allowed_ips=params.get("allowed_ips"), actor=_actor(principal), ip=request.remote_addr)
    return jsonify(token_json(token, utcnow(), secret)), 201, NO_STORE


def _rotation(params: dict) -> dict[str, Any]:
    """The optional `expires_at` and `grace_period` (whole seconds) of a rotation."""
    options: dict[str, Any] = {}
    if params.get("expires_at") is not None:
        options["expires_at"] = _expiry(_string(params, "expires_at"))
    raw = params.get("grace_period")
    if raw is not None:
        if isinstance(raw, str) and re.fullmatch(r"\s*\d{1,9}\s*", raw):
            raw = int(raw)
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise Invalid({"grace_period": [
                "Grace period must be a whole number of seconds from 0 to 604800 (7 days)"]})
        options["grace_period"] = raw
    return options


def rotate_token(kind: str, ref: str, token_id: int):
    """Gatehouse's addition: a new secret, the old one valid for a grace period."""
    principal, owner = _owner_for(kind, ref, Action.MANAGE_DEPLOY_TOKENS)
    options = _rotation(_params())
    try:
        token, secret = DEPLOY_TOKENS.rotate(owner, token_id, actor=_actor(principal),
                                             ip=request.remote_addr, **options)
    except NotFound:
        raise _not_found("Deploy Token")
    return jsonify(token_json(token, utcnow(), secret)), 200, NO_STORE


def show_token(kind: str, ref: str, token_id: int):
    _, owner = _owner_for(kind, ref, Action.MANAGE_DEPLOY_TOKENS)
    try:
        token = DEPLOY_TOKENS.get_for(owner, token_id)
    except NotFound:
        raise _not_found("Deploy Token")
    return jsonify(token_json(token, utcnow()))


def delete_token(kind: str, ref: str, token_id: int):
    principal, owner = _owner_for(kind, ref, Action.MANAGE_DEPLOY_TOKENS)
    try:
        deploy_tokens.destroy(owner, token_id, actor=_actor(principal), ip=request.remote_addr)
    except NotFound:
        raise _not_found("Deploy Token")
    return "", 204


def identified_json(found: secret_tokens.Identified, now: datetime) -> dict:
    """What an admin learns about a leaked value: kind, id, owner, scopes, state, last use."""
    token = found.token
    owner = token.owner
    if isinstance(owner, User):
        owner_json = {"type": "user", "id": owner.id, "username": owner.username}
    else:
        owner_json = {"type": "project" if isinstance(owner, Project) else "group",
                      "id": owner.id, "full_path": owner.full_path}
    return {"kind": found.kind.key, "id": token.id, "name": token.name,
            "owner": owner_json, "scopes": token.scopes, "state": found.state(now),
            "matched": found.matched, "revoked": token.revoked,
            "created_at": iso(token.created_at), "expires_at": iso(token.expires_at),
            "last_used_at": iso(token.last_used_at), "last_used_ip": token.last_used_ip,
            **_grace_json(token, now)}


def _leaked_value() -> str:
    # From the body only: a secret in the query string would end up in access logs.
    if "token" in request.args:
        raise ApiError(400, {"error": "send token in the request body, not the URL"})
    value = _params().get("token")
    if value is None:
        raise ApiError(400, {"error": "token is missing"})
    if not isinstance(value, str):
        raise ApiError(400, {"error": "token is invalid"})
    return value


@bp.post("/admin/token")
def identify_token():
    """GitLab's token information API: what a secret is, for any Gatehouse token kind."""
    authorize(signed_in(), Action.IDENTIFY_ANY_TOKEN, INSTANCE)
    found = secret_tokens.identify(_leaked_value())
    if found is None:
        raise _not_found("Token")
    response = jsonify(identified_json(found, utcnow()))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.delete("/admin/token")
def revoke_leaked_token():
    """Revoke the token a leaked secret belongs to (a previous secret: end its grace)."""
    principal = signed_in()
    authorize(principal, Action.IDENTIFY_ANY_TOKEN, INSTANCE)
    found = secret_tokens.revoke_value(_leaked_value(), actor=_actor(principal),
                                       ip=request.remote_addr)
    if found is None:
        raise _not_found("Token")
    return "", 204


# ---------------------------------------------------------------- audit events

def audit_event_json(event, entity=None) -> dict:
    """GitLab's audit event shape; `details` also carries what Gatehouse recorded."""
    entity_type = type(entity).__name__ if entity is not None else "Instance"
    details = dict(event.details or {})
    details.update({"author_name": event.actor_name, "target_id": event.target_id,
                    "target_type": event.target_type,
                    "target_details": details.get("name") or details.get("url"),
                    "ip_address": event.ip, "event_name": event.action,
                    "entity_path": getattr(entity, "full_path", None)})
    return {"id": event.id, "author_id": event.actor_id or -1,
            "entity_id": getattr(entity, "id", None), "entity_type": entity_type,
            "event_name": event.action, "details": details,
            "created_at": iso(event.created_at)}


def _moment(name: str) -> Optional[datetime]:
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return _expiry(raw)
    except ApiError:
        raise ApiError(400, {"error": f"{name} is invalid"})


def _audit_filters() -> dict:
    token_id = request.args.get("token_id")
    if token_id is not None and not token_id.isdigit():
        raise ApiError(400, {"error": "token_id is invalid"})
    return {"token_id": int(token_id) if token_id else None,
            "after": _moment("created_after"), "before": _moment("created_before")}


def _paged_events(owner, path: Optional[str] = None):
    events, headers = paginate(audit.events_query(owner, **_audit_filters()), path=path)
    response = jsonify([audit_event_json(e, owner) for e in events])
    response.headers.update(headers)
    return response


@bp.get("/audit_events")
def all_audit_events():
    """Every audit event of the instance: administrators only."""
    authorize(signed_in(), Action.READ_ALL_AUDIT_EVENTS, INSTANCE)
    return _paged_events(None)


def owner_audit_events(kind: str, ref: str):
    _, owner = _owner_for(kind, ref, Action.READ_AUDIT_EVENTS)
    return _paged_events(owner, path=f"{bp.url_prefix}/{kind}/{quote(ref, safe='')}/audit_events")


# ---------------------------------------------------------------- webhooks

def hook_json(hook) -> dict:
    owner_key = "project_id" if hook.project_id is not None else "group_id"
    return {"id": hook.id, "url": hook.url, owner_key: hook.owner.id,
            "created_at": iso(hook.created_at), "deploy_token_events": hook.deploy_token_events,
            "enable_ssl_verification": hook.enable_ssl_verification,
            "push_events": False, "alert_status": "executable"}


def delivery_json(delivery) -> dict:
    return {"id": delivery.id, "event": delivery.event, "state": delivery.state,
            "attempts": delivery.attempts, "response_status": delivery.last_status,
            "error": delivery.last_error, "created_at": iso(delivery.created_at),
            "next_attempt_at": iso(delivery.next_attempt_at) if delivery.state == "pending"
            else None, "delivered_at": iso(delivery.delivered_at)}


TRUE_WORDS = ("true", "1", "yes", "t")
FALSE_WORDS = ("false", "0", "no", "f")


def _boolean(params, name: str, default: Optional[bool]) -> Optional[bool]:
    """A Grape-style boolean parameter; absent or empty means `default`."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS:
        return True
    if isinstance(value, str) and value.strip().lower() in FALSE_WORDS:
        return False
    raise ApiError(400, {"error": f"{name} is invalid"})


def _hook(owner, hook_id: int):
    try:
        return webhooks.get_for(owner, hook_id)
    except NotFound:
        raise _not_found("Hook")


def list_hooks(kind: str, ref: str):
    _, owner = _owner_for(kind, ref, Action.MANAGE_WEBHOOKS)
    return jsonify([hook_json(h) for h in webhooks.list_for(owner)])


def create_hook(kind: str, ref: str):
    principal, owner = _owner_for(kind, ref, Action.MANAGE_WEBHOOKS)
    params = _params()
    if params.get("url") is None:
        raise ApiError(400, {"error": "url is missing"})
    hook = webhooks.create(
        owner, url=_string(params, "url"), token=_string(params, "token"),
        deploy_token_events=_boolean(params, "deploy_token_events", True),
        enable_ssl_verification=_boolean(params, "enable_ssl_verification", True),
        actor=_actor(principal), ip=request.remote_addr)
    return jsonify(hook_json(hook)), 201


def show_hook(kind: str, ref: str, hook_id: int):
    _, owner = _owner_for(kind, ref, Action.MANAGE_WEBHOOKS)
    return jsonify(hook_json(_hook(owner, hook_id)))


def delete_hook(kind: str, ref: str, hook_id: int):
    principal, owner = _owner_for(kind, ref, Action.MANAGE_WEBHOOKS)
    _hook(owner, hook_id)
    webhooks.delete(owner, hook_id, actor=_actor(principal), ip=request.remote_addr)
    return "", 204


def hook_deliveries(kind: str, ref: str, hook_id: int):
    """Gatehouse's addition: the hook's last deliveries and their outcome."""
    _, owner = _owner_for(kind, ref, Action.MANAGE_WEBHOOKS)
    return jsonify([delivery_json(d) for d in webhooks.deliveries(_hook(owner, hook_id))])


@bp.post("/personal_access_tokens/<int:token_id>/rotate")
@bp.post("/personal_access_tokens/self/rotate")
def rotate_personal_access_token(token_id: Optional[int] = None):
    """GitLab's rotation of a personal access token: by its owner, or by an admin.

    Unlike GitLab, the token keeps its id and its old secret works for a grace period.
    """
    principal = signed_in()
    token_id = principal.token_id if token_id is None else token_id
    token = db.session.get(PersonalAccessToken, token_id)
    if token is None or not (principal.is_admin or token.user_id == principal.user_id):
        raise _not_found()
    options = _rotation(_params())
    token, secret = PERSONAL_ACCESS_TOKENS.rotate(
        token.user, token.id, actor=_actor(principal), ip=request.remote_addr, **options)
    return jsonify(pat_json(token, utcnow(), secret)), 200, NO_STORE


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
    bp.add_url_rule(f"{_tokens}/<int:token_id>/rotate", f"{_kind}_rotate_deploy_token",
                    rotate_token, methods=["POST"], defaults={"kind": _kind})
    bp.add_url_rule(f"/{_kind}/<path:ref>/audit_events", f"{_kind}_audit_events",
                    owner_audit_events, methods=["GET"], defaults={"kind": _kind})
    _hooks = f"/{_kind}/<path:ref>/hooks"
    bp.add_url_rule(_hooks, f"{_kind}_list_hooks", list_hooks, methods=["GET"],
                    defaults={"kind": _kind})
    bp.add_url_rule(_hooks, f"{_kind}_create_hook", create_hook, methods=["POST"],
                    defaults={"kind": _kind})
    bp.add_url_rule(f"{_hooks}/<int:hook_id>", f"{_kind}_show_hook", show_hook,
                    methods=["GET"], defaults={"kind": _kind})
    bp.add_url_rule(f"{_hooks}/<int:hook_id>", f"{_kind}_delete_hook", delete_hook,
                    methods=["DELETE"], defaults={"kind": _kind})
    bp.add_url_rule(f"{_hooks}/<int:hook_id>/deliveries", f"{_kind}_hook_deliveries",
                    hook_deliveries, methods=["GET"], defaults={"kind": _kind})


# ---------------------------------------------------------------- container registry

def _registry_project(ref: str, action: Action):
    """The project whose registry the caller may read (or delete from)."""
    principal = signed_in() if action == Action.DELETE_REGISTRY else caller()
    return _owner_for("projects", ref, action, principal)


def _flag(name: str) -> bool:
    return (request.args.get(name) or "").strip().lower() in TRUE_WORDS


def repository_json(repo, tag_names: Optional[list[str]] = None) -> dict:
    body = {"id": repo.id, "name": repo.image_name, "path": repo.name,
            "project_id": repo.project_id, "location": container_registry.location(repo.name),
            "created_at": iso(repo.created_at), "cleanup_policy_started_at": None,
            "status": None}
    if tag_names is not None:
        if _flag("tags"):
            body["tags"] = [tag_json(repo, name) for name in tag_names]
        if _flag("tags_count"):
            body["tags_count"] = len(tag_names)
    return body


def tag_json(repo, name: str) -> dict:
    return {"name": name, "path": f"{repo.name}:{name}",
            "location": container_registry.location(f"{repo.name}:{name}")}


def tag_details_json(repo, tag) -> dict:
    revision = tag.config_digest.split(":", 1)[-1]
    return {**tag_json(repo, tag.name), "revision": revision, "short_revision": revision[:9],
            "digest": tag.digest, "created_at": iso(tag.created_at), "total_size": tag.size}


def _paged_list(items: list) -> tuple[list, dict]:
    page, per_page = page_params()
    pages = max(1, -(-len(items) // per_page))
    return (items[(page - 1) * per_page: page * per_page],
            headers_for(page, per_page, len(items), pages, request.path))


@bp.get("/projects/<path:ref>/registry/repositories")
def registry_repositories(ref: str):
    _, project = _registry_project(ref, Action.READ_REGISTRY)
    repos, headers = _paged_list(container_registry.repositories(project))
    wants_tags = _flag("tags") or _flag("tags_count")
    response = jsonify([repository_json(
        r, container_registry.tag_names(r) if wants_tags else None) for r in repos])
    response.headers.update(headers)
    return response


@bp.get("/projects/<path:ref>/registry/repositories/<int:repository_id>/tags")
def registry_tags(ref: str, repository_id: int):
    _, project = _registry_project(ref, Action.READ_REGISTRY)
    repo = container_registry.repository(project, repository_id)
    names, headers = _paged_list(container_registry.tag_names(repo))
    response = jsonify([tag_json(repo, name) for name in names])
    response.headers.update(headers)
    return response


@bp.get("/projects/<path:ref>/registry/repositories/<int:repository_id>/tags/<tag_name>")
def registry_tag(ref: str, repository_id: int, tag_name: str):
    _, project = _registry_project(ref, Action.READ_REGISTRY)
    repo = container_registry.repository(project, repository_id)
    return jsonify(tag_details_json(repo, container_registry.tag(repo, tag_name)))


@bp.delete("/projects/<path:ref>/registry/repositories/<int:repository_id>/tags/<tag_name>")
def registry_delete_tag(ref: str, repository_id: int, tag_name: str):
    principal, project = _registry_project(ref, Action.DELETE_REGISTRY)
    repo = container_registry.repository(project, repository_id)
    container_registry.delete_tag(project, repo, tag_name, actor=_actor(principal),
                                  ip=request.remote_addr)
    return "", 200
