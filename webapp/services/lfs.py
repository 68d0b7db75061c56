"""Git LFS: the batch API's answers, signed transfer grants, stored objects and locks.

Objects are stored once, by content (the package store: an LFS oid is the SHA-256 of
the bytes), and linked to each project that uploaded them. A project reads only objects
linked to it, so knowing an oid is never enough to read another project's object: the
only way to link one is to upload its bytes.

The batch answer hands git-lfs a short-lived `Authorization` header for each transfer,
so the transfer itself needs no credentials: an HMAC (keyed by SECRET_KEY) over the
project, the oid, the operation and the expiry.
"""
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import LfsLock, LfsObject, LfsObjectProject, Project, User, iso8601
from . import package_storage
from .errors import DomainError, Forbidden, Invalid, NotFound

OID_RE = re.compile(r"^[0-9a-f]{64}$")
OPERATIONS = ("download", "upload")
SCHEME = "Gatehouse-LFS"
MAX_BATCH_OBJECTS = 1000
MAX_LOCKS_PAGE = 100


class Conflict(DomainError):
    """A lock already exists (409); `lock` is the one in the way."""

    status = 409

    def __init__(self, message: str, lock: LfsLock):
        super().__init__(message)
        self.lock = lock


def max_size() -> int:
    return int(current_app.config["MAX_LFS_OBJECT_SIZE"])


# ---------------------------------------------------------------- transfer grants

def _mac(payload: str) -> str:
    key = hashlib.sha256(b"gatehouse lfs transfer\0" + current_app.config["SECRET_KEY"].encode()
                         ).digest()
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def grant(project_id: int, oid: str, operation: str, *, now: Optional[float] = None) -> tuple[str, int]:
    """A signed `Authorization` value for one transfer, and its lifetime in seconds."""
    lifetime = int(current_app.config["LFS_TRANSFER_LIFETIME"])
    expires = int(now if now is not None else time.time()) + lifetime
    body = f"{project_id}.{operation}.{expires}"
    return f"{SCHEME} {body}.{_mac(f'{body}.{oid}')}", lifetime


def check_grant(header: str, oid: str, operation: str, *, now: Optional[float] = None) -> int:
    """The project id a valid, unexpired grant for (oid, operation) names; else Forbidden."""
    scheme, _, value = (header or "").partition(" ")
    parts = value.strip().split(".")
    if scheme != SCHEME or len(parts) != 4:
        raise Forbidden("missing or malformed transfer authorization: run the batch request again")
    project_id, op, expires, mac = parts
    if not hmac.compare_digest(mac, _mac(f"{project_id}.{op}.{expires}.{oid}")) \
            or op != operation or not project_id.isdigit() or not expires.isdigit():
        raise Forbidden("this transfer authorization is not valid for this object")
    if int(expires) < (now if now is not None else time.time()):
        raise Forbidden("this transfer authorization has expired: run the batch request again")
    return int(project_id)


# ---------------------------------------------------------------- batch

@dataclass(frozen=True)
class Wanted:
    oid: str
    size: int


def parse_batch(body: Any) -> tuple[str, list[Wanted]]:
    """Check a batch request's shape; return its operation and objects (Invalid if bad)."""
    if not isinstance(body, dict):
        raise Invalid({"body": ["the request body must be a JSON object"]})
    operation = body.get("operation")
    if operation not in OPERATIONS:
        raise Invalid({"operation": ["operation must be download or upload"]})
    if body.get("hash_algo", "sha256") != "sha256":
        raise Invalid({"hash_algo": ["only sha256 is supported"]})
    objects = body.get("objects")
    if not isinstance(objects, list) or not objects:
        raise Invalid({"objects": ["objects must be a non-empty list"]})
    if len(objects) > MAX_BATCH_OBJECTS:
        raise Invalid({"objects": [f"at most {MAX_BATCH_OBJECTS} objects per batch"]})
    wanted = []
    for item in objects:
        oid = item.get("oid") if isinstance(item, dict) else None
        size = item.get("size") if isinstance(item, dict) else None
        if not isinstance(oid, str) or not OID_RE.match(oid):
            raise Invalid({"objects": ["each object needs an oid: 64 lower-case hex digits"]})
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise Invalid({"objects": [f"object {oid} needs a size: a number of bytes"]})
        wanted.append(Wanted(oid, size))
    return operation, wanted


def linked(project_id: int, oids: list[str]) -> dict[str, LfsObject]:
    """The objects among `oids` that this project holds, by oid."""
    if not oids:
        return {}
    rows = db.session.scalars(
        sa.select(LfsObject).join(LfsObjectProject, LfsObjectProject.lfs_object_id == LfsObject.id)
        .where(LfsObjectProject.project_id == project_id, LfsObject.oid.in_(oids)))
    return {row.oid: row for row in rows}


def batch(project: Project, operation: str, objects: list[Wanted], base_url: str) -> dict:
    """The batch answer: a basic-transfer action per object, or a per-object error."""
    held = linked(project.id, [o.oid for o in objects])
    answers = []
    for wanted in objects:
        answer: dict[str, Any] = {"oid": wanted.oid, "size": wanted.size, "authenticated": True}
        href = f"{base_url}/gitlab-lfs/objects/{wanted.oid}"
        row = held.get(wanted.oid)
        if operation == "download":
            if row is None or not package_storage.content_path(wanted.oid).is_file():
                answer["error"] = {"code": 404, "message": "Object does not exist on the server"}
            else:
                answer["size"] = row.size
                answer["actions"] = {"download": _action(project.id, wanted.oid, "download", href)}
        elif wanted.size > max_size():
            answer["error"] = {"code": 413, "message": (
                f"Object {wanted.oid} is {wanted.size} bytes: larger than this server's "
                f"limit of {max_size()} bytes")}
        elif row is None:
            # Uploaded even when another project holds the same bytes: sending them is
            # what proves this project may read them.
            answer["actions"] = {
                "upload": _action(project.id, wanted.oid, "upload", f"{href}/{wanted.size}"),
                "verify": _action(project.id, wanted.oid, "upload", f"{href}/{wanted.size}/verify")}
        answers.append(answer)
    return {"transfer": "basic", "objects": answers, "hash_algo": "sha256"}


def _action(project_id: int, oid: str, operation: str, href: str) -> dict:
    header, lifetime = grant(project_id, oid, operation)
    return {"href": href, "header": {"Authorization": header}, "expires_in": lifetime}


# ---------------------------------------------------------------- storage

def receive(project_id: int, oid: str, size: int,
            body: Callable[[int], package_storage.Upload]) -> None:
    """Store an uploaded object and link it to the project, or change nothing.

    The bytes are hashed on the way in; only when they hash to the oid and have the
    announced size does the file reach its content address, and only then the rows.
    """
    upload = body(min(size, max_size()))
    try:
        if upload.sha256 != oid or upload.size != size:
            raise Invalid({"oid": [f"the uploaded content does not match oid {oid} and size {size}"]})
        upload.store()
        _link(project_id, oid, size)
    except BaseException:
        db.session.rollback()
        upload.discard()
        upload.unstore()
        raise


def _link(project_id: int, oid: str, size: int) -> None:
    for attempt in range(2):
        try:
            row = db.session.scalar(sa.select(LfsObject).where(LfsObject.oid == oid))
            if row is None:
                row = LfsObject(oid=oid, size=size)
                db.session.add(row)
                db.session.flush()
            exists = db.session.scalar(sa.select(LfsObjectProject.id).where(
                LfsObjectProject.lfs_object_id == row.id, LfsObjectProject.project_id == project_id))
            if exists is None:
                db.session.add(LfsObjectProject(lfs_object_id=row.id, project_id=project_id))
            db.session.commit()
            return
        except IntegrityError:
            # The same object arrived for the same or another project at the same moment.
            db.session.rollback()
            if attempt:
                raise


def stored(project_id: int, oid: str) -> LfsObject:
    """The object if this project holds it and its file is on disk; else NotFound."""
    row = linked(project_id, [oid]).get(oid)
    if row is None or not package_storage.content_path(oid).is_file():
        raise NotFound("Object does not exist on the server")
    return row


def verify(project_id: int, oid: str, size: Any) -> None:
    """Confirm an upload arrived whole (git-lfs calls this after the transfer)."""
    row = stored(project_id, oid)
    if row.size != size:
        raise Invalid({"size": [f"object {oid} is {row.size} bytes, not {size}"]})


# ---------------------------------------------------------------- locks

def lock_json(lock: LfsLock) -> dict:
    return {"id": str(lock.id), "path": lock.path, "locked_at": iso8601(lock.created_at),
            "owner": {"name": lock.user.username}}


def _clean_path(path: Any) -> str:
    if not isinstance(path, str) or not path.strip() or len(path) > 1024 or "\0" in path:
        raise Invalid({"path": ["path must be the repository path of a file"]})
    return path


def create_lock(project: Project, user: User, path: Any, ref: Optional[str]) -> LfsLock:
    """Lock a file for a user; Conflict when someone (or they) holds it already."""
    path = _clean_path(path)
    lock = LfsLock(project_id=project.id, path=path, user_id=user.id,
                   ref=ref if isinstance(ref, str) else None)
    db.session.add(lock)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = db.session.scalar(sa.select(LfsLock).where(
            LfsLock.project_id == project.id, LfsLock.path == path))
        if existing is None:
            raise
        raise Conflict("already created lock", existing)
    return lock


def list_locks(project: Project, *, path: Optional[str] = None, lock_id: Optional[str] = None,
               cursor: Optional[str] = None, limit: Optional[str] = None) -> tuple[list[LfsLock], str]:
    """Locks in id order, filtered by path or id, a page at a time (cursor: the next id)."""
    query = sa.select(LfsLock).where(LfsLock.project_id == project.id).order_by(LfsLock.id)
    if path:
        query = query.where(LfsLock.path == path)
    if lock_id:
        if not lock_id.isdigit():
            return [], ""
        query = query.where(LfsLock.id == int(lock_id))
    if cursor:
        if not cursor.isdigit():
            raise Invalid({"cursor": ["cursor is invalid"]})
        query = query.where(LfsLock.id >= int(cursor))
    size = _limit(limit)
    rows = list(db.session.scalars(query.limit(size + 1)))
    next_cursor = str(rows[size].id) if len(rows) > size else ""
    return rows[:size], next_cursor


def _limit(raw: Any) -> int:
    if raw in (None, ""):
        return MAX_LOCKS_PAGE
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise Invalid({"limit": ["limit must be a number"]})
    return min(max(value, 1), MAX_LOCKS_PAGE)


def verify_locks(project: Project, user: User, cursor: Any, limit: Any) -> dict:
    """Split the project's locks into the user's own and everyone else's (before a push)."""
    rows, next_cursor = list_locks(project, cursor=cursor if isinstance(cursor, str) else None,
                                   limit=limit)
    return {"ours": [lock_json(r) for r in rows if r.user_id == user.id],
            "theirs": [lock_json(r) for r in rows if r.user_id != user.id],
            "next_cursor": next_cursor}


def unlock(project: Project, user: User, lock_id: int, *, force: bool, may_force: bool) -> dict:
    """Remove a lock and return it as JSON: its owner may, others only with force."""
    lock = db.session.scalar(sa.select(LfsLock).where(
        LfsLock.project_id == project.id, LfsLock.id == lock_id))
    if lock is None:
        raise NotFound("Lock not found")
    if lock.user_id != user.id:
        if not force:
            raise Forbidden(f"{lock.path} is locked by {lock.user.username}: "
                            "use --force to remove someone else's lock")
        if not may_force:
            raise Forbidden("You must be a Maintainer to remove someone else's lock")
    answer = lock_json(lock)
    db.session.delete(lock)
    db.session.commit()
    return answer
