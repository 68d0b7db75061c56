"""The one access policy: every permission question is `can(principal, action, target)`."""
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional, Union

import sqlalchemy as sa

from ..extensions import db
from ..models import AccessLevel, Group, Membership, Project, Visibility


class Action(str, enum.Enum):
    READ_PROJECT = "read_project"
    READ_REPOSITORY = "read_repository"
    PUSH_REPOSITORY = "push_repository"
    READ_REGISTRY = "read_registry"
    WRITE_REGISTRY = "write_registry"
    READ_PACKAGE = "read_package"
    WRITE_PACKAGE = "write_package"
    DELETE_PACKAGE = "delete_package"
    MANAGE_DEPLOY_TOKENS = "manage_deploy_tokens"
    READ_CI_VARIABLES = "read_ci_variables"


# action → (deploy token scopes, any of which allows it; user level needed; public read?)
RULES: dict[Action, tuple[frozenset[str], Optional[AccessLevel], bool]] = {
    Action.READ_PROJECT: (frozenset(), AccessLevel.GUEST, True),
    Action.READ_REPOSITORY: (frozenset({"read_repository"}), AccessLevel.REPORTER, True),
    Action.PUSH_REPOSITORY: (frozenset(), AccessLevel.DEVELOPER, False),
    Action.READ_REGISTRY: (frozenset({"read_registry"}), AccessLevel.REPORTER, True),
    Action.WRITE_REGISTRY: (frozenset({"write_registry"}), AccessLevel.DEVELOPER, False),
    Action.READ_PACKAGE: (frozenset({"read_package_registry", "write_package_registry"}),
                          AccessLevel.REPORTER, True),
    Action.WRITE_PACKAGE: (frozenset({"write_package_registry"}), AccessLevel.DEVELOPER, False),
    # npm unpublish, the Packages page's delete button: GitLab's destroy_package.
    Action.DELETE_PACKAGE: (frozenset({"write_package_registry"}), AccessLevel.MAINTAINER, False),
    Action.MANAGE_DEPLOY_TOKENS: (frozenset(), AccessLevel.MAINTAINER, False),
    Action.READ_CI_VARIABLES: (frozenset(), None, False),
}


# A personal access token acts as its user, narrowed by its scopes: `read_api` reads,
# `api` also writes. (The REST API adds GitLab's own rule on top: read_api is GET-only.)
WRITE_ACTIONS = frozenset({Action.PUSH_REPOSITORY, Action.WRITE_REGISTRY, Action.WRITE_PACKAGE,
                           Action.DELETE_PACKAGE})


def _token_scopes_for(action: Action) -> frozenset[str]:
    return frozenset({"api"}) if action in WRITE_ACTIONS else frozenset({"api", "read_api"})


@dataclass(frozen=True)
class Principal:
    """Who is asking, resolved once from whatever credentials came with the request."""

    kind: str  # anonymous | user | deploy_token | runner | personal_access_token
    name: str = ""
    user_id: Optional[int] = None
    is_admin: bool = False
    token_id: Optional[int] = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    # A deploy token or runner token belongs to exactly one of these.
    project_id: Optional[int] = None
    group_id: Optional[int] = None
    # When the token was last recorded as used, as loaded: lets record_use skip the
    # database entirely while that is recent.
    last_used_at: Optional[datetime] = field(default=None, compare=False)

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"

    @property
    def acts_as_user(self) -> bool:
        return self.user_id is not None


ANONYMOUS = Principal("anonymous")


@dataclass(frozen=True)
class Decision:
    """Allowed, or the reason as an HTTP status: 401 ask for credentials, 403, 404."""

    allowed: bool
    status: int = 200
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Decision(True)


def _deny_unseen(principal: Principal) -> Decision:
    # Anonymous callers are asked for credentials; everyone else learns nothing more
    # than they would about a path that does not exist.
    if principal.is_anonymous:
        return Decision(False, 401, "authentication required")
    return Decision(False, 404, "not found")


Target = Union[Project, Group, None]


def can(principal: Principal, action: Action, target: Target) -> Decision:
    """Decide whether `principal` may do `action` on a project or group."""
    if target is None:
        return _deny_unseen(principal)
    scopes, level, public_read = RULES[Action(action)]

    if principal.kind in ("deploy_token", "runner"):
        if not _token_reaches(principal, target):
            return _deny_unseen(principal)
        if principal.kind == "runner":
            return ALLOW if action == Action.READ_CI_VARIABLES else Decision(False, 403, "forbidden")
        if action == Action.READ_PROJECT or principal.scopes & scopes:
            return ALLOW
        return Decision(False, 403, f"this deploy token cannot {_verb(action)}")

    if not visible(principal, target):
        return _deny_unseen(principal)
    if level is None:
        return Decision(False, 403, "forbidden")
    if principal.kind == "personal_access_token" and not principal.scopes & _token_scopes_for(action):
        return Decision(False, 403, "this personal access token needs the api scope")
    if principal.acts_as_user:
        if principal.is_admin or access_level(principal.user_id, target) >= level:
            return ALLOW
    if public_read and isinstance(target, Project) and _publicly_readable(principal, target):
        return ALLOW
    if principal.is_anonymous:
        return Decision(False, 401, "authentication required")
    return Decision(False, 403, f"you are not allowed to {_verb(action)}")


def _verb(action: Action) -> str:
    return {
        Action.READ_PROJECT: "see this project",
        Action.READ_REPOSITORY: "read this repository",
        Action.PUSH_REPOSITORY: "push code to this project",
        Action.READ_REGISTRY: "pull from this container registry",
        Action.WRITE_REGISTRY: "push to this container registry",
        Action.READ_PACKAGE: "read this package registry",
        Action.WRITE_PACKAGE: "write to this package registry",
        Action.DELETE_PACKAGE: "delete packages from this registry",
        Action.MANAGE_DEPLOY_TOKENS: "manage deploy tokens here",
        Action.READ_CI_VARIABLES: "read CI variables",
    }[Action(action)]


def _token_reaches(principal: Principal, target: Union[Project, Group]) -> bool:
    """A project token reaches its project; a group token its group and everything below."""
    if isinstance(target, Project):
        if principal.project_id is not None:
            return principal.project_id == target.id
        return principal.group_id is not None and target.group.is_self_or_descendant_of(principal.group_id)
    return principal.group_id is not None and target.is_self_or_descendant_of(principal.group_id)


def _publicly_readable(principal: Principal, project: Project) -> bool:
    if project.visibility == Visibility.PUBLIC.value:
        return True
    return project.visibility == Visibility.INTERNAL.value and principal.acts_as_user


def access_level(user_id: Optional[int], target: Union[Project, Group]) -> int:
    """Return the user's effective level: the highest along the target's group ancestry."""
    if user_id is None:
        return 0
    groups = target.group.ancestors() if isinstance(target, Project) else target.ancestors()
    cond = Membership.group_id.in_([g.id for g in groups])
    if isinstance(target, Project):
        cond = sa.or_(cond, Membership.project_id == target.id)
    level = db.session.scalar(
        sa.select(sa.func.max(Membership.access_level)).where(Membership.user_id == user_id, cond))
    return level or 0


def visible(principal: Principal, target: Union[Project, Group]) -> bool:
    """Whether the principal may know that the project or group exists."""
    if principal.kind in ("deploy_token", "runner"):
        return _token_reaches(principal, target)
    if principal.is_admin:
        return True
    if isinstance(target, Project):
        return _publicly_readable(principal, target) or access_level(principal.user_id, target) > 0
    if principal.acts_as_user and access_level(principal.user_id, target) > 0:
        return True
    # A group is visible to whoever can see something inside it.
    return any(visible(principal, p) for p in target.projects) or any(
        visible(principal, g) for g in target.children)
