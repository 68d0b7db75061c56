"""Turn whatever credentials a request carried into one Principal."""
from typing import Optional

from ..models import DeployToken, PersonalAccessToken, RunnerToken, User
from . import accounts, deploy_tokens, personal_access_tokens, runners, secret_tokens
from .policy import ANONYMOUS, Principal


def for_user(user: Optional[User]) -> Principal:
    if user is None:
        return ANONYMOUS
    return Principal("user", name=user.username, user_id=user.id, is_admin=user.is_admin)


def for_deploy_token(token) -> Principal:
    return Principal("deploy_token", name=token.username, token_id=token.id,
                     scopes=frozenset(token.scopes), project_id=token.project_id,
                     group_id=token.group_id, last_used_at=token.last_used_at)


def from_basic(username: str, password: str) -> Optional[Principal]:
    """Resolve basic-auth credentials: a deploy token with its username, or a user.

    Returns None when neither matches, which callers answer with 401.
    """
    token = deploy_tokens.find_active(username, password)
    if token is not None:
        return for_deploy_token(token)
    user = accounts.find_user(username)
    if user is not None and user.check_password(password):
        return for_user(user)
    return None


def for_runner(token) -> Principal:
    return Principal("runner", name=f"runner-{token.id}", token_id=token.id,
                     project_id=token.project_id, last_used_at=token.last_used_at)


def from_runner_token(secret: Optional[str]) -> Optional[Principal]:
    """Resolve a runner token (`Authorization: Bearer glrt-...`) to its project's runner."""
    token = runners.find_active(secret)
    return for_runner(token) if token is not None else None


def from_deploy_token_secret(secret: str) -> Optional[Principal]:
    """Resolve a bare secret (a `Deploy-Token` header), where no username is sent."""
    token = deploy_tokens.find_active_by_secret(secret)
    return for_deploy_token(token) if token is not None else None


def from_personal_access_token(secret: str) -> Optional[Principal]:
    """Resolve a `PRIVATE-TOKEN` / bearer secret to its active token's user, or None."""
    token = personal_access_tokens.find_active_by_secret(secret)
    if token is None:
        return None
    user = token.user
    return Principal("personal_access_token", name=user.username, user_id=user.id,
                     is_admin=user.is_admin, token_id=token.id, scopes=frozenset(token.scopes),
                     last_used_at=token.last_used_at)


TOKEN_MODELS = {"deploy_token": DeployToken, "runner": RunnerToken,
                "personal_access_token": PersonalAccessToken}


def record_use(principal: Principal, ip: Optional[str]) -> None:
    """Note a successful use of a token, at most once per LAST_USED_INTERVAL.

    On the hot path (every authenticated request) a use recorded recently, as seen when
    the token was loaded, costs no query at all.
    """
    model = TOKEN_MODELS.get(principal.kind)
    if model is None or principal.token_id is None:
        return
    secret_tokens.touch(model, principal.token_id, ip, seen=principal.last_used_at)
