"""Deploy tokens: what is their own (usernames, the CI secret, deletion); the rest is shared."""
import hmac
import re
from datetime import date, datetime, time, timezone
from typing import Optional, Union

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import SCOPES, DeployToken, Group, Project, User, utcnow
from . import audit, encryption, secret_tokens, webhooks
from .secret_tokens import TokenKind

USERNAME_RE = re.compile(r"[a-zA-Z0-9.+_-]+")
# The form every default username takes; nobody may choose one (it is another token's).
RESERVED_USERNAME_RE = re.compile(r"gitlab\+deploy-token-\d+", re.IGNORECASE)
CI_TOKEN_NAME = "gitlab-deploy-token"
Owner = Union[Project, Group]


def secret_aad(token_id: int) -> bytes:
    """Associated data that binds a token's ciphertext to its own row."""
    return b"deploy_tokens.token_encrypted:%d" % token_id


def expiry_from_date(day: date) -> datetime:
    """A token given a date stops working at 00:00 UTC of that date."""
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def validate_username(username: Optional[str]) -> dict[str, list[str]]:
    """The rules a custom username breaks, by field; empty when it is valid or unset."""
    if not username:
        return {}
    if len(username) > secret_tokens.NAME_MAX:
        return {"username": [f"Username is too long (maximum is {secret_tokens.NAME_MAX} "
                             "characters)"]}
    if not USERNAME_RE.fullmatch(username):
        return {"username": ["Username can contain only letters, digits, '_', '-', '+', and '.'"]}
    if RESERVED_USERNAME_RE.fullmatch(username):
        return {"username": ["Username cannot take the form gitlab+deploy-token-N: that is "
                             "the default username of another token"]}
    if db.session.scalar(sa.select(User.id).where(
            sa.func.lower(User.username) == username.lower())) is not None:
        # Registry tokens and audit logs name the username: it must not be a person's.
        return {"username": ["Username is taken by a user: choose another one"]}
    return {}


def validate(name: Optional[str], username: Optional[str], scopes: list[str],
             expires_at: Optional[datetime], *, now: datetime) -> dict[str, list[str]]:
    """Return every rule the input breaks, by field; empty when it is valid."""
    errors = DEPLOY_TOKENS.validate(name, scopes, expires_at, now=now)
    errors.update(validate_username(username))
    return errors


def _keep_ci_secret(token: DeployToken, secret: str) -> None:
    """CI hands the gitlab-deploy-token's secret to jobs, so it alone stays recoverable.

    Called on creation and on every rotation, so jobs get a rotated secret at once.
    """
    if token.project_id is None or token.name != CI_TOKEN_NAME:
        return
    try:
        token.token_encrypted = encryption.encrypt(secret, secret_aad(token.id))
    except encryption.EncryptionKeyError:
        db.session.rollback()  # no CI token without its recoverable secret
        raise


def _owner_values(owner: Owner) -> dict:
    return {"project_id": owner.id} if isinstance(owner, Project) else {"group_id": owner.id}


def _owned_by(owner: Owner):
    if isinstance(owner, Project):
        return DeployToken.project_id == owner.id
    return DeployToken.group_id == owner.id


DEPLOY_TOKENS = TokenKind(
    key="deploy_token", model=DeployToken, label="Deploy token",
    prefix=lambda: current_app.config["DEPLOY_TOKEN_PREFIX"], scopes=SCOPES,
    owner_values=_owner_values, owner_filter=_owned_by,
    audit_details=lambda token: {"name": token.name, "scopes": token.scopes,
                                 "owner": token.owner.full_path, "username": token.username},
    # Deleted through the API: kept for the audit trail, never listed or found by id.
    hidden=lambda model: model.deleted_at.is_not(None),
    on_secret=_keep_ci_secret,
    on_event=lambda name, token: webhooks.enqueue(f"deploy_token_{name}", token),
    loaded_with=("project",),
)


def create(owner: Owner, *, name: Optional[str], scopes: list[str],
           username: Optional[str] = None, expires_at: Optional[datetime] = None,
           allowed_ips=None, actor: Optional[User] = None, ip: Optional[str] = None,
           now: Optional[datetime] = None) -> tuple[DeployToken, str]:
    """Create a token for a project or group; return it with its secret, shown once."""
    username = (username or "").strip() or None
    return DEPLOY_TOKENS.create(owner, name=name, scopes=scopes, expires_at=expires_at,
                                allowed_ips=allowed_ips, actor=actor, ip=ip, now=now,
                                errors=validate_username(username), custom_username=username)


def find_ci_token(project: Project, *, now: Optional[datetime] = None
                  ) -> Optional[DeployToken]:
    """The project's active token named gitlab-deploy-token that CI exposes, if any.

    Only a project's own token counts (never a group's). With several, the newest wins,
    so a replacement can be created before the old one is revoked.
    """
    now = now or utcnow()
    return db.session.scalar(
        sa.select(DeployToken)
        .where(DeployToken.project_id == project.id, DeployToken.name == CI_TOKEN_NAME,
               DeployToken.token_encrypted.is_not(None), DEPLOY_TOKENS.live(now))
        .order_by(DeployToken.id.desc()).limit(1))


def reveal_ci_secret(token: DeployToken) -> str:
    """Decrypt the secret of the CI token (raises encryption.DecryptionError)."""
    return encryption.decrypt(token.token_encrypted, secret_aad(token.id))


def destroy(owner: Owner, token_id: int, *, actor: Optional[User] = None,
            ip: Optional[str] = None, now: Optional[datetime] = None) -> DeployToken:
    """Delete a token as GitLab's API does: it stops working and leaves every listing.

    The row stays, revoked and marked deleted, so its audit events keep their target.
    """
    now = now or utcnow()
    token = DEPLOY_TOKENS.get_for(owner, token_id)
    secret_tokens.mark_revoked(token, now)
    token.deleted_at = now
    audit.record("deploy_token_destroyed", token, actor=actor, ip=ip,
                 **DEPLOY_TOKENS.audit_details(token))
    DEPLOY_TOKENS.event("destroyed", token)
    db.session.commit()
    return token


def find_active(username: Optional[str], secret: str, *, now: Optional[datetime] = None
                ) -> Optional[DeployToken]:
    """Return the active token with this secret and username, or None."""
    token = DEPLOY_TOKENS.find_active(secret, now=now)
    if token is None or username is None:
        return None
    if not hmac.compare_digest(username.encode("utf-8"), token.username.encode("utf-8")):
        return None
    return token
