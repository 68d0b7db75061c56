"""The one access policy: every permission question is `can(principal, action, target)`."""
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional, Union

import sqlalchemy as sa

from ..extensions import db
from ..models import AccessLevel, Group, Membership, Project, Visibility
from .errors import Forbidden, NotFound, Unauthenticated


class Action(str, enum.Enum):
    READ_PROJECT = "read_project"
    READ_REPOSITORY = "read_repository"
    PUSH_REPOSITORY = "push_repository"
    READ_REGISTRY = "read_registry"
    WRITE_REGISTRY = "write_registry"
    DELETE_REGISTRY = "delete_registry"
    READ_PACKAGE = "read_package"
    WRITE_PACKAGE = "write_package"
    DELETE_PACKAGE = "delete_package"
    MANAGE_DEPLOY_TOKENS = "manage_deploy_tokens"
    FORCE_UNLOCK_LFS = "force_unlock_lfs"
    MANAGE_WEBHOOKS = "manage_webhooks"
    READ_AUDIT_EVENTS = "read_audit_events"
    READ_CI_VARIABLES = "read_ci_variables"
    # Instance-wide actions: their target is INSTANCE.
    REGISTRY_LOGIN = "registry_login"
    API_READ = "api_read"
    API_WRITE = "api_write"
    LIST_ALL_DEPLOY_TOKENS = "list_all_deploy_tokens"
    IDENTIFY_ANY_TOKEN = "identify_any_token"  # look up and revoke a leaked value
    READ_ALL_AUDIT_EVENTS = "read_all_audit_events"


class PrincipalKind(str, enum.Enum):
    ANONYMOUS = "anonymous"
    USER = "user"
    DEPLOY_TOKEN = "deploy_token"
    PERSONAL_ACCESS_TOKEN = "personal_access_token"
    RUNNER = "runner_token"
    SERVICE = "service"  # Gatehouse itself, signing its own registry tokens

    def __str__(self) -> str:
        return self.value


class Instance:
    """The target of instance-wide actions (the whole Gatehouse)."""

    def __repr__(self) -> str:
        return "INSTANCE"


INSTANCE = Instance()
ANY_SCOPE = frozenset({"*"})
READ_API = frozenset({"api", "read_api"})
WRITE_API = frozenset({"api"})


@dataclass(frozen=True)
class Rule:
    """Who may do one action: a row of the one policy table."""

    deploy_scopes: frozenset[str] = frozenset()  # any of these; ANY_SCOPE: any token
    pat_scopes: frozenset[str] = frozenset()     # a personal access token needs one of these
    level: Optional[AccessLevel] = None          # a user's role on the target; None: no user
    public_read: bool = False                    # anyone, on a public project
    runner: bool = False                         # a runner token of the target project
    admin_only: bool = False                     # instance actions only admins may do
    anonymous: bool = False                      # instance actions anonymous callers may do
    deploy_refusal: str = ""                     # why no deploy token may, when none may


# The one access policy. Scopes for deploy tokens as GitLab's; a personal access token
# acts as its user narrowed by its scopes (`read_api` reads, `api` also writes); runner
# tokens read CI variables and nothing else.
RULES: dict[Action, Rule] = {
    Action.READ_PROJECT: Rule(ANY_SCOPE, READ_API, AccessLevel.GUEST, public_read=True),
    Action.READ_REPOSITORY: Rule(frozenset({"read_repository"}), READ_API,
                                 AccessLevel.REPORTER, public_read=True),
    Action.PUSH_REPOSITORY: Rule(frozenset(), WRITE_API, AccessLevel.DEVELOPER, deploy_refusal=(
        "you are not allowed to push code to this project: deploy tokens are read-only. "
        "Push as a user with the Developer role or higher")),
    Action.READ_REGISTRY: Rule(frozenset({"read_registry"}), READ_API, AccessLevel.REPORTER,
                               public_read=True),
    Action.WRITE_REGISTRY: Rule(frozenset({"write_registry"}), WRITE_API, AccessLevel.DEVELOPER),
    Action.READ_PACKAGE: Rule(frozenset({"read_package_registry", "write_package_registry"}),
                              READ_API, AccessLevel.REPORTER, public_read=True),
    Action.WRITE_PACKAGE: Rule(frozenset({"write_package_registry"}), WRITE_API,
                               AccessLevel.DEVELOPER),
    # npm unpublish, the Packages page's delete button: GitLab's destroy_package.
    Action.DELETE_PACKAGE: Rule(frozenset({"write_package_registry"}), WRITE_API,
                                AccessLevel.MAINTAINER),
    # Deleting image tags (the registry page and API); no deploy token scope allows it.
    Action.DELETE_REGISTRY: Rule(frozenset(), WRITE_API, AccessLevel.MAINTAINER),
    Action.MANAGE_DEPLOY_TOKENS: Rule(frozenset(), READ_API, AccessLevel.MAINTAINER),
    # Removing someone else's Git LFS lock (`git lfs unlock --force`).
    Action.FORCE_UNLOCK_LFS: Rule(frozenset(), WRITE_API, AccessLevel.MAINTAINER),
    Action.MANAGE_WEBHOOKS: Rule(frozenset(), READ_API, AccessLevel.MAINTAINER),
    Action.READ_AUDIT_EVENTS: Rule(frozenset(), READ_API, AccessLevel.MAINTAINER),
    Action.READ_CI_VARIABLES: Rule(runner=True),
    # `docker login` names no repository: the credentials must carry a registry right.
    Action.REGISTRY_LOGIN: Rule(frozenset({"read_registry", "write_registry"}),
                                level=AccessLevel.GUEST),
    # GitLab checks read_api before it looks anything up: it never writes.
    Action.API_READ: Rule(pat_scopes=READ_API, level=AccessLevel.GUEST, anonymous=True),
    Action.API_WRITE: Rule(pat_scopes=WRITE_API, level=AccessLevel.GUEST),
    Action.LIST_ALL_DEPLOY_TOKENS: Rule(pat_scopes=READ_API, level=AccessLevel.GUEST,
                                        admin_only=True),
    Action.IDENTIFY_ANY_TOKEN: Rule(pat_scopes=READ_API, level=AccessLevel.GUEST,
                                    admin_only=True),
    Action.READ_ALL_AUDIT_EVENTS: Rule(pat_scopes=READ_API, level=AccessLevel.GUEST,
                                       admin_only=True),
}


@dataclass(frozen=True)
class Principal:
    """Who is asking, resolved once from whatever credentials came with the request."""

    kind: PrincipalKind
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

    def __post_init__(self):
        object.__setattr__(self, "kind", PrincipalKind(self.kind))

    @property
    def is_anonymous(self) -> bool:
        return self.kind == PrincipalKind.ANONYMOUS

    @property
    def acts_as_user(self) -> bool:
        return self.user_id is not None

    @property
    def is_machine_token(self) -> bool:
        """A deploy or runner token: reaches only its own project or group."""
        return self.kind in (PrincipalKind.DEPLOY_TOKEN, PrincipalKind.RUNNER)


ANONYMOUS = Principal(PrincipalKind.ANONYMOUS)


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


Target = Union[Project, Group, Instance, None]


def can(principal: Principal, action: Action, target: Target) -> Decision:
    """Decide whether `principal` may do `action` on a project, a group or INSTANCE."""
    rule = RULES[Action(action)]
    if target is INSTANCE:
        return _can_on_instance(principal, action, rule)
    if target is None:
        return _deny_unseen(principal)

    if principal.is_machine_token:
        if not _token_reaches(principal, target):
            return _deny_unseen(principal)
        if principal.kind == PrincipalKind.RUNNER:
            return ALLOW if rule.runner else Decision(False, 403, "forbidden")
        if rule.deploy_scopes is ANY_SCOPE or principal.scopes & rule.deploy_scopes:
            return ALLOW
        return _deploy_refusal(action, rule)

    if not visible(principal, target):
        return _deny_unseen(principal)
    if rule.level is None:
        return Decision(False, 403, "forbidden")
    if principal.kind == PrincipalKind.PERSONAL_ACCESS_TOKEN and not principal.scopes & rule.pat_scopes:
        return Decision(False, 403, "this personal access token needs the api scope")
    if principal.acts_as_user:
        if principal.is_admin or access_level(principal.user_id, target) >= rule.level:
            return ALLOW
    if rule.public_read and isinstance(target, Project) and _publicly_readable(principal, target):
        return ALLOW
    if principal.is_anonymous:
        return Decision(False, 401, "authentication required")
    return Decision(False, 403, f"you are not allowed to {_verb(action)}")


def _can_on_instance(principal: Principal, action: Action, rule: Rule) -> Decision:
    if principal.is_anonymous:
        return ALLOW if rule.anonymous else Decision(False, 401, "authentication required")
    if principal.kind == PrincipalKind.DEPLOY_TOKEN:
        if principal.scopes & rule.deploy_scopes:
            return ALLOW
        return _deploy_refusal(action, rule)
    if principal.kind == PrincipalKind.RUNNER or rule.level is None:
        return Decision(False, 403, "forbidden")
    if principal.kind == PrincipalKind.PERSONAL_ACCESS_TOKEN and not principal.scopes & rule.pat_scopes:
        return Decision(False, 403, "this personal access token needs the api scope")
    if rule.admin_only and not principal.is_admin:
        return Decision(False, 403, "only administrators may do this")
    return ALLOW


def _deploy_refusal(action: Action, rule: Rule) -> Decision:
    if rule.deploy_refusal:
        return Decision(False, 403, rule.deploy_refusal)
    if not rule.deploy_scopes:
        return Decision(False, 403, f"deploy tokens cannot {_verb(action)}")
    scopes = " or ".join(sorted(rule.deploy_scopes))
    return Decision(False, 403, f"this deploy token cannot {_verb(action)}: it lacks the "
                                f"{scopes} scope")


def authorize(principal: Principal, action: Action, target: Target):
    """Return the target when the principal may do `action` on it; raise otherwise.

    401 → Unauthenticated, 403 → Forbidden, 404 → NotFound: a caller never holds a
    target that might be missing.
    """
    decision = can(principal, action, target)
    if decision:
        return target
    if decision.status == 401:
        raise Unauthenticated(decision.reason)
    if decision.status == 404:
        raise NotFound(decision.reason)
    raise Forbidden(decision.reason)


def _verb(action: Action) -> str:
    return {
        Action.READ_PROJECT: "see this project",
        Action.READ_REPOSITORY: "read this repository",
        Action.PUSH_REPOSITORY: "push code to this project",
        Action.READ_REGISTRY: "pull from this container registry",
        Action.WRITE_REGISTRY: "push to this container registry",
        Action.DELETE_REGISTRY: "delete images from this container registry",
        Action.READ_PACKAGE: "read this package registry",
        Action.WRITE_PACKAGE: "write to this package registry",
        Action.DELETE_PACKAGE: "delete packages from this registry",
        Action.MANAGE_DEPLOY_TOKENS: "manage deploy tokens here",
        Action.FORCE_UNLOCK_LFS: "remove other people's locks",
        Action.MANAGE_WEBHOOKS: "manage webhooks here",
        Action.READ_AUDIT_EVENTS: "read the audit events here",
        Action.READ_ALL_AUDIT_EVENTS: "read every audit event",
        Action.READ_CI_VARIABLES: "read CI variables",
        Action.REGISTRY_LOGIN: "log in to the container registry",
        Action.API_READ: "use the API",
        Action.API_WRITE: "change anything through the API",
        Action.LIST_ALL_DEPLOY_TOKENS: "list every deploy token",
        Action.IDENTIFY_ANY_TOKEN: "look up tokens by their value",
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
    if principal.is_machine_token:
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
