"""Users, groups, projects and memberships."""
import re
from typing import Collection, Optional, Union

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import AccessLevel, Group, Membership, Project, Route, User, Visibility
from . import audit, repositories
from .errors import Invalid, NotFound
from .policy import Principal, visible

PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
USERNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# First path segments the app itself answers; a top-level group may not take them.
RESERVED_TOP_LEVEL = {"-", "api", "jwt", "ci", "users", "groups", "static", "admin",
                      "dashboard", "help", "explore", "health"}
ROLES = {level.name.lower(): level for level in AccessLevel}


def _check_path(segment: str, field: str, errors: dict) -> None:
    if not segment:
        errors.setdefault(field, []).append("Path can't be blank")
    elif len(segment) > 255:
        errors.setdefault(field, []).append("Path is too long (maximum is 255 characters)")
    elif not PATH_RE.match(segment) or segment.endswith((".git", ".atom")) or ".." in segment:
        errors.setdefault(field, []).append(
            f"Path '{segment}' can contain only letters, digits, '_', '-' and '.', cannot "
            "start with '-' or '.', and cannot end in '.git' or '.atom'")


def create_user(username: str, email: str, password: str, *, admin: bool = False) -> User:
    """Create a user with a hashed password."""
    errors: dict[str, list[str]] = {}
    if not username or len(username) > 255 or not USERNAME_RE.match(username):
        errors["username"] = ["Username can contain only letters, digits, '_', '-' and '.'"]
    if not email or "@" not in email:
        errors["email"] = ["Email is invalid"]
    if len(password or "") < 8:
        errors["password"] = ["Password is too short (minimum is 8 characters)"]
    if not errors and db.session.scalar(sa.select(User.id).where(
            sa.or_(User.username == username, User.email == email))):
        errors["username"] = ["Username or email has already been taken"]
    if errors:
        raise Invalid(errors)
    user = User(username=username, email=email, is_admin=admin)
    user.set_password(password, current_app.config["PASSWORD_HASH_METHOD"])
    db.session.add(user)
    db.session.commit()
    return user


def create_group(full_path: str, *, name: Optional[str] = None) -> Group:
    """Create a group (and no parents: those must exist)."""
    parent_path, _, path = full_path.strip("/").rpartition("/")
    errors: dict[str, list[str]] = {}
    _check_path(path, "path", errors)
    if not parent_path and path.lower() in RESERVED_TOP_LEVEL:
        errors.setdefault("path", []).append(f"'{path}' is reserved")
    parent = None
    if parent_path:
        parent = find_group(parent_path)
        if parent is None:
            errors.setdefault("path", []).append(f"Parent group '{parent_path}' does not exist")
    if not errors:
        _check_free(full_path.strip("/"), errors)
    if errors:
        raise Invalid(errors)
    # The parent's own spelling: it was found ignoring case.
    group = Group(name=name or path, path=path, parent=parent,
                  full_path=f"{parent.full_path}/{path}" if parent else path)
    db.session.add_all([group, Route(path=group.full_path, group=group)])
    try:
        db.session.commit()
    except IntegrityError:  # a create that raced ours took the path
        db.session.rollback()
        raise _taken(group.full_path) from None
    return group


def create_project(full_path: str, *, name: Optional[str] = None,
                   visibility: str = Visibility.PRIVATE.value) -> Project:
    """Create a project inside an existing group."""
    group_path, _, path = full_path.strip("/").rpartition("/")
    errors: dict[str, list[str]] = {}
    _check_path(path, "path", errors)
    group = find_group(group_path) if group_path else None
    if group is None:
        errors.setdefault("path", []).append(
            f"Group '{group_path}' does not exist" if group_path
            else "A project lives in a group: give GROUP/PROJECT")
    if visibility not in {v.value for v in Visibility}:
        errors["visibility"] = ["Visibility must be private, internal or public"]
    if not errors:
        _check_free(full_path.strip("/"), errors)
    if errors:
        raise Invalid(errors)
    project = Project(name=name or path, path=path, full_path=f"{group.full_path}/{path}",
                      group=group, visibility=visibility)
    # The repository is made under a temporary name first and renamed into place only
    # once the row is flushed; any failure removes it again, so no orphan is left.
    staged = repositories.Staged(project.full_path)
    try:
        db.session.add_all([project, Route(path=project.full_path, project=project)])
        db.session.flush()
        staged.publish()
        db.session.commit()
    except BaseException as error:
        db.session.rollback()
        staged.discard()
        if isinstance(error, IntegrityError):  # a create that raced ours took the path
            raise _taken(project.full_path) from None
        raise
    return project


def _check_free(full_path: str, errors: dict) -> None:
    """A path is taken when a group or project has it, ignoring case (as GitLab does).

    Asks the routes table, whose unique index is what holds when two creates race past
    this check (see _taken); the check is here for the clearer message.
    """
    taken = db.session.scalar(_ROUTE_AT, {"path": full_path.lower()})
    if taken is None:
        return
    if taken == full_path:
        errors["path"] = [f"'{full_path}' has already been taken"]
    else:
        errors["path"] = [f"'{full_path}' has already been taken: '{taken}' differs "
                          "only in case, and paths are unique ignoring case"]


def _taken(full_path: str) -> Invalid:
    """The error for a path another create took between our check and our insert."""
    errors: dict[str, list[str]] = {}
    _check_free(full_path, errors)
    return Invalid(errors or {"path": [f"'{full_path}' has already been taken"]})


def add_member(full_path: str, username: str, role: str) -> Membership:
    """Give a user a role on a group or project, replacing any role they had there."""
    level = ROLES.get(role.lower())
    if level is None:
        raise Invalid({"role": [f"Unknown role '{role}': use one of {', '.join(ROLES)}"]})
    target = find_target(full_path)
    if target is None:
        raise NotFound(f"No group or project at '{full_path}'")
    user = db.session.scalar(sa.select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"No user '{username}'")
    key = {"group_id": target.id} if isinstance(target, Group) else {"project_id": target.id}
    membership = db.session.scalar(sa.select(Membership).filter_by(user_id=user.id, **key))
    if membership is None:
        membership = Membership(user_id=user.id, **key)
        db.session.add(membership)
    membership.access_level = int(level)
    audit.record("member_added", target, actor=None, ip=None, user=username, role=level.label)
    db.session.commit()
    return membership


def unlock(username: str) -> User:
    """Lift the account lock and forget the wrong passwords counted so far."""
    user = find_user(username)
    if user is None:
        raise NotFound(f"No user '{username}'")
    user.failed_attempts, user.locked_until = 0, None
    audit.record("user_unlocked", user, actor=None, ip=None, user=username)
    db.session.commit()
    return user


def end_sessions(user: User) -> None:
    """Sign the user out of every browser, this one included."""
    user = db.session.merge(user)
    user.end_sessions()
    db.session.commit()


def find_user(username: str) -> Optional[User]:
    return db.session.scalar(sa.select(User).where(User.username == username))


# Lookups by path, ignoring case (paths are unique that way). Built once: nearly every
# request makes one, and building a statement costs more CPU than running it.
_GROUP_AT = sa.select(Group).where(sa.func.lower(Group.full_path) == sa.bindparam("path"))
_ROUTE_AT = sa.select(Route.path).where(sa.func.lower(Route.path) == sa.bindparam("path"))
# The longest first: should a group and a project ever share a path (rows written past
# the routes table, say by hand), the deepest project still wins.
_PROJECT_AMONG = sa.select(Project).where(
    sa.func.lower(Project.full_path).in_(sa.bindparam("paths", expanding=True))
).order_by(sa.func.length(Project.full_path).desc()).limit(1)


def find_group(full_path: str) -> Optional[Group]:
    """The group at a full path, matched ignoring case (paths are unique that way)."""
    return db.session.scalar(_GROUP_AT, {"path": full_path.strip("/").lower()})


def find_project(full_path: str) -> Optional[Project]:
    """The project at a full path, matched ignoring case (paths are unique that way)."""
    return find_project_among([full_path.strip("/").lower()])


def find_project_among(paths: Collection[str]) -> Optional[Project]:
    """The project at one of `paths` (lower case), if any; the registry asks with every
    prefix of an image name.

    There is at most one: projects have no children, and a path is never both a group
    and a project (the routes table's unique index), so no project's path is a prefix of
    another's.
    """
    return _loaded_project(paths) or db.session.scalar(_PROJECT_AMONG, {"paths": list(paths)})


def _loaded_project(paths: Collection[str]) -> Optional[Project]:
    """The project this session has already loaded at one of `paths`, if any.

    A token is looked up together with the project it belongs to, so the door's next
    question, "which project is at this path?", is usually answered without a query.
    Only fresh objects count (not expired by a commit, not being deleted).
    """
    session = db.session()
    for obj in session.identity_map.values():
        if type(obj) is Project:
            path = obj.__dict__.get("full_path")  # absent when expired
            if path is not None and path.lower() in paths and obj not in session.deleted:
                return obj
    return None


def find_target(full_path: str) -> Union[Project, Group, None]:
    return find_project(full_path) or find_group(full_path)


def project_by_ref(ref: str) -> Optional[Project]:
    """Find a project by numeric id or full path, as the /api/v4 `:id` allows."""
    if ref.isdigit():
        return db.session.get(Project, int(ref))
    return find_project(ref)


def group_by_ref(ref: str) -> Optional[Group]:
    if ref.isdigit():
        return db.session.get(Group, int(ref))
    return find_group(ref)


def visible_projects(principal: Principal) -> list[Project]:
    """Projects the principal can see, by full path."""
    projects = db.session.scalars(sa.select(Project).order_by(Project.full_path))
    return [p for p in projects if visible(principal, p)]


def visible_groups(principal: Principal) -> list[Group]:
    groups = db.session.scalars(sa.select(Group).order_by(Group.full_path))
    return [g for g in groups if visible(principal, g)]
