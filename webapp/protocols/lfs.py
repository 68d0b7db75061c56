"""Git LFS at GitLab's URLs: `/<project>.git/info/lfs/objects/batch`, locks, and transfers.

git-lfs finds the LFS server at `<remote URL>.git/info/lfs` and sends the batch and lock
requests with the same basic credentials as git (a deploy token with its username, or a
user's password), first without any: so anything needing credentials answers 401 with
`LFS-Authenticate: Basic`. Every answer is `application/vnd.git-lfs+json`, errors as
`{"message": …}`, which git-lfs prints; an HTML error page would leave it speechless.

The batch answer carries, per object, a short-lived signed `Authorization` header for
the transfer (`/gitlab-lfs/objects/<oid>[/<size>]`), so git-lfs does not ask for
credentials again and the transfer endpoints never see a password.
"""
import json
from typing import Any, Optional

from flask import Blueprint, Response, current_app, request, send_file

from ..extensions import db
from ..models import Project, User
from ..services import accounts, lfs, nginx, package_storage
from ..services.errors import DomainError, Invalid, NotFound, Unauthenticated
from ..services.policy import Action, Principal, authorize as allow, can
from . import spool
from .auth import REALM, authenticate
from .git_http import DOOR as GIT_DOOR, NOT_FOUND, project_path

bp = Blueprint("lfs", __name__)

MEDIA_TYPE = "application/vnd.git-lfs+json"
MAX_JSON_BODY = 1 << 20


class LfsError(Exception):
    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def _json(body: dict, status: int = 200, headers: Optional[dict] = None) -> Response:
    response = Response(json.dumps(body), status, {"Content-Type": MEDIA_TYPE})
    # Batch answers carry transfer authorizations; nothing here belongs in a cache.
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(headers or {})
    return response


@bp.errorhandler(LfsError)
def _lfs_error(error: LfsError):
    headers = {}
    if error.status == 401:
        headers["LFS-Authenticate"] = f'Basic realm="{REALM}"'
    return _json({"message": error.message, **error.extra}, error.status, headers)


@bp.errorhandler(DomainError)
def _domain_error(error: DomainError):
    status = 422 if isinstance(error, Invalid) else error.status
    extra = {"lock": lfs.lock_json(error.lock)} if isinstance(error, lfs.Conflict) else {}
    message = str(error)
    if isinstance(error, Unauthenticated):
        message = ("Credentials needed" if message == "authentication required"
                   else "HTTP Basic: Access denied")
    elif isinstance(error, NotFound) and message == "not found":
        message = NOT_FOUND  # the policy's answer for what the caller may not see
    elif error.status == 403:
        message = message[:1].upper() + message[1:].rstrip(".") + "."
    return _lfs_error(LfsError(status, message, **extra))


@bp.errorhandler(package_storage.TooLarge)
def _too_large(error):
    response = _lfs_error(LfsError(413, str(error)))
    response.headers["Connection"] = "close"
    return response


@bp.errorhandler(package_storage.Incomplete)
def _incomplete(error):
    return _lfs_error(LfsError(400, f"upload incomplete: {error}"))


# ---------------------------------------------------------------- authentication

def authorize(repo: str, action: Action) -> tuple[Project, Principal]:
    """Authenticate through git's door (the same credentials), then ask the policy.

    The one place LFS looks at credentials: the batch and lock endpoints call it.
    """
    principal = authenticate(GIT_DOOR)
    project = allow(principal, action, accounts.find_project(project_path(repo)))
    return project, principal


def _user(principal: Principal) -> User:
    user = db.session.get(User, principal.user_id) if principal.acts_as_user else None
    if user is None:
        raise LfsError(403, "Only users can lock files.")
    return user


def _body() -> Any:
    data = request.stream.read(MAX_JSON_BODY + 1)
    if len(data) > MAX_JSON_BODY:
        raise LfsError(413, "The request body is too large.")
    if not data.strip():
        return {}
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise LfsError(422, "The request body is not valid JSON.")


def _base_url(project: Project) -> str:
    return f"{current_app.config['EXTERNAL_URL']}/{project.full_path}.git"


# ---------------------------------------------------------------- batch

@bp.post("/<path:repo>/info/lfs/objects/batch")
def batch(repo: str):
    body = _body()
    operation, objects = lfs.parse_batch(body)
    action = Action.READ_REPOSITORY if operation == "download" else Action.PUSH_REPOSITORY
    project, _ = authorize(repo, action)
    return _json(lfs.batch(project, operation, objects, _base_url(project)))


# ---------------------------------------------------------------- transfers

def _granted(oid: str, operation: str) -> int:
    if not lfs.OID_RE.match(oid):
        raise LfsError(422, "oid must be 64 lower-case hex digits")
    return lfs.check_grant(request.headers.get("Authorization", ""), oid, operation)


@bp.get("/<path:repo>/gitlab-lfs/objects/<oid>")
def download(repo: str, oid: str):
    project_id = _granted(oid, "download")
    lfs.stored(project_id, oid)
    path = package_storage.content_path(oid)
    db.session.remove()  # nothing below needs the database while the file streams
    if nginx.in_front(request):
        # LFS objects share the package store: nginx serves them once we have decided.
        response = Response(status=200, mimetype="application/octet-stream")
        response.set_etag(oid)
        response.headers["X-Accel-Redirect"] = nginx.accel_path(oid)
        response.headers["Cache-Control"] = "private, no-store"
        return response
    response = send_file(path, mimetype="application/octet-stream", etag=oid,
                         conditional=True, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.put("/<path:repo>/gitlab-lfs/objects/<oid>/<int:size>")
def upload(repo: str, oid: str, size: int):
    project_id = _granted(oid, "upload")
    db.session.remove()  # no connection held while the body streams in
    lfs.receive(project_id, oid, size,
                lambda limit: spool.upload(limit=limit))
    return _json({}, 200)


@bp.post("/<path:repo>/gitlab-lfs/objects/<oid>/<int:size>/verify")
def verify(repo: str, oid: str, size: int):
    project_id = _granted(oid, "upload")
    body = _body()
    if not isinstance(body, dict) or body.get("oid") != oid:
        raise LfsError(422, "The body must name the object being verified.")
    lfs.verify(project_id, oid, body.get("size"))
    return _json({}, 200)


# ---------------------------------------------------------------- locks

@bp.post("/<path:repo>/info/lfs/locks")
def create_lock(repo: str):
    body = _body()
    project, principal = authorize(repo, Action.PUSH_REPOSITORY)
    if not isinstance(body, dict):
        raise LfsError(422, "The request body must be a JSON object.")
    ref = body.get("ref", {}).get("name") if isinstance(body.get("ref"), dict) else None
    lock = lfs.create_lock(project, _user(principal), body.get("path"), ref)
    return _json({"lock": lfs.lock_json(lock)}, 201)


@bp.get("/<path:repo>/info/lfs/locks")
def list_locks(repo: str):
    project, _ = authorize(repo, Action.READ_REPOSITORY)
    rows, next_cursor = lfs.list_locks(
        project, path=request.args.get("path"), lock_id=request.args.get("id"),
        cursor=request.args.get("cursor"), limit=request.args.get("limit"))
    return _json({"locks": [lfs.lock_json(r) for r in rows], "next_cursor": next_cursor})


@bp.post("/<path:repo>/info/lfs/locks/verify")
def verify_locks(repo: str):
    body = _body()
    project, principal = authorize(repo, Action.PUSH_REPOSITORY)
    if not isinstance(body, dict):
        raise LfsError(422, "The request body must be a JSON object.")
    return _json(lfs.verify_locks(project, _user(principal), body.get("cursor"), body.get("limit")))


@bp.post("/<path:repo>/info/lfs/locks/<int:lock_id>/unlock")
def unlock(repo: str, lock_id: int):
    body = _body()
    project, principal = authorize(repo, Action.PUSH_REPOSITORY)
    force = isinstance(body, dict) and body.get("force") is True
    may_force = bool(can(principal, Action.FORCE_UNLOCK_LFS, project))
    lock = lfs.unlock(project, _user(principal), lock_id, force=force, may_force=may_force)
    return _json({"lock": lock})
