"""Deploy tokens: create, list, revoke, and authenticate machines with them."""
import hmac
import re
import unicodedata
from datetime import date, datetime, time, timezone
from typing import Optional, Union

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import SCOPES, DeployToken, Group, Project, User, utcnow
from . import audit, encryption, secret_tokens
from .secret_tokens import digest  # noqa: F401  (re-exported: tests and callers use it)
from .errors import Invalid, NotFound

USERNAME_RE = re.compile(r"[a-zA-Z0-9.+_-]+")
# The form every default username takes; nobody may choose one (it is another token's).
RESERVED_USERNAME_RE = re.compile(r"gitlab\+deploy-token-\d+", re.IGNORECASE)
CI_TOKEN_NAME = "gitlab-deploy-token"
Owner = Union[Project, Group]


def secret_aad(token_id: int) -> bytes:
    """Associated data that binds a token's ciphertext to its own row."""
    return b"deploy_tokens.token_encrypted:%d" % token_id


def generate_secret() -> str:
    return secret_tokens.generate(current_app.config["DEPLOY_TOKEN_PREFIX"])


def expiry_from_date(day: date) -> datetime:
    """A token given a date stops working at 00:00 UTC of that date."""
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def validate(name: Optional[str], username: Optional[str], scopes: list[str],
             expires_at: Optional[datetime], *, now: datetime) -> dict[str, list[str]]:
    """Return every rule the input breaks, by field; empty when it is valid."""
    errors = secret_tokens.check_common(name, scopes, SCOPES, expires_at, now=now)
    if "name" not in errors and has_unsafe_characters((name or "").strip()):
        errors["name"] = [UNSAFE_CHARACTERS]
    if username:
        if len(username) > 255:
            errors["username"] = ["Username is too long (maximum is 255 characters)"]
        elif not USERNAME_RE.fullmatch(username):
            errors["username"] = [
                "Username can contain only letters, digits, '_', '-', '+', and '.'"]
        elif RESERVED_USERNAME_RE.fullmatch(username):
            errors["username"] = [
                "Username cannot take the form gitlab+deploy-token-N: that is the default "
                "username of another token"]
        elif db.session.scalar(sa.select(User.id).where(
                sa.func.lower(User.username) == username.lower())) is not None:
            # Registry tokens and audit logs name the username: it must not be a person's.
            errors["username"] = ["Username is taken by a user: choose another one"]
    return errors


UNSAFE_CHARACTERS = ("Name cannot contain control characters or invisible formatting "
                     "characters (such as right-to-left overrides)")


def has_unsafe_characters(text: Optional[str]) -> bool:
    """True when `text` holds control, format (bidi overrides, zero-width) or line separators."""
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text or "")


def create(owner: Owner, *, name: Optional[str], scopes: list[str],
           username: Optional[str] = None, expires_at: Optional[datetime] = None,
           actor: Optional[User] = None, ip: Optional[str] = None,
           now: Optional[datetime] = None) -> tuple[DeployToken, str]:
    """Create a token for a project or group; return it with its secret, shown once."""
    now = now or utcnow()
    username = (username or "").strip() or None
    scopes = secret_tokens.clean_scopes(scopes)
    errors = validate(name, username, scopes, expires_at, now=now)
    if errors:
        raise Invalid(errors)
    secret = generate_secret()
    token = DeployToken(
        name=name.strip(), custom_username=username, token_digest=digest(secret),
        expires_at=expires_at, creator_id=actor.id if actor else None, created_at=now,
        **{s: (s in scopes) for s in SCOPES},
        **({"project_id": owner.id} if isinstance(owner, Project) else {"group_id": owner.id}),
    )
    db.session.add(token)
    db.session.flush()  # the default username and the ciphertext's binding need the id
    if isinstance(owner, Project) and token.name == CI_TOKEN_NAME:
        # CI hands this one secret to jobs as CI_DEPLOY_PASSWORD, so it must be
        # recoverable; every other token keeps only the digest.
        try:
            token.token_encrypted = encryption.encrypt(secret, secret_aad(token.id))
        except encryption.EncryptionKeyError:
            db.session.rollback()  # no CI token without its recoverable secret
            raise
    audit.record("deploy_token_created", token, actor=actor, ip=ip, name=token.name,
                 scopes=token.scopes, owner=owner.full_path, username=token.username)
    db.session.commit()
    return token, secret


def _owned_by(owner: Owner):
    if isinstance(owner, Project):
        return DeployToken.project_id == owner.id
    return DeployToken.group_id == owner.id


def select_tokens(owner: Optional[Owner] = None, *, active: Optional[bool] = None,
                  now: Optional[datetime] = None, newest_first: bool = True) -> sa.Select:
    """A query for the tokens of `owner` (of everyone when None), deleted ones left out."""
    now = now or utcnow()
    query = sa.select(DeployToken).where(DeployToken.deleted_at.is_(None)).order_by(
        DeployToken.id.desc() if newest_first else DeployToken.id)
    if owner is not None:
        query = query.where(_owned_by(owner))
    if active is not None:
        live = secret_tokens.live(DeployToken, now)
        query = query.where(live if active else sa.not_(live))
    return query


def list_for(owner: Owner, *, active: Optional[bool] = None,
             now: Optional[datetime] = None) -> list[DeployToken]:
    """The owner's tokens, newest first; `active` filters on revoked and expiry."""
    return list(db.session.scalars(select_tokens(owner, active=active, now=now)))


def get_for(owner: Owner, token_id: int) -> DeployToken:
    token = db.session.scalar(sa.select(DeployToken).where(
        _owned_by(owner), DeployToken.id == token_id, DeployToken.deleted_at.is_(None)))
    if token is None:
        raise NotFound("Deploy token not found")
    return token


def revoke(owner: Owner, token_id: int, *, actor: Optional[User] = None,
           ip: Optional[str] = None, now: Optional[datetime] = None) -> DeployToken:
    """Revoke a token for good. Revoking a revoked token changes nothing."""
    token = get_for(owner, token_id)
    if secret_tokens.mark_revoked(token, now):
        audit.record("deploy_token_revoked", token, actor=actor, ip=ip, name=token.name,
                     scopes=token.scopes, owner=owner.full_path, username=token.username)
        db.session.commit()
    return token


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
               DeployToken.token_encrypted.is_not(None), DeployToken.revoked.is_(False),
               sa.or_(DeployToken.expires_at.is_(None), DeployToken.expires_at > now))
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
    token = get_for(owner, token_id)
    secret_tokens.mark_revoked(token, now)
    token.deleted_at = now
    audit.record("deploy_token_destroyed", token, actor=actor, ip=ip, name=token.name,
                 scopes=token.scopes, owner=owner.full_path, username=token.username)
    db.session.commit()
    return token


def covers(token: DeployToken, target: Owner) -> bool:
    """A project token covers its project; a group token its group and all below it."""
    if token.project_id is not None:
        return isinstance(target, Project) and target.id == token.project_id
    group = target.group if isinstance(target, Project) else target
    return group.is_self_or_descendant_of(token.group_id)


def find_active_by_secret(secret: str, *, now: Optional[datetime] = None
                          ) -> Optional[DeployToken]:
    """Return the active token with this secret, or None (for headers without a username)."""
    token = secret_tokens.by_secret(DeployToken, secret)
    if token is None or not token.active_at(now or utcnow()):
        return None
    return token


def find_active(username: str, secret: str, *, now: Optional[datetime] = None
                ) -> Optional[DeployToken]:
    """Return the active token with this secret and username, or None."""
    token = find_active_by_secret(secret, now=now)
    if token is None or username is None:
        return None
    if not hmac.compare_digest(username.encode("utf-8"), token.username.encode("utf-8")):
        return None
    return token


def authenticate(username: str, secret: str, target: Optional[Owner] = None, *,
                 ip: Optional[str] = None, now: Optional[datetime] = None
                 ) -> Optional[DeployToken]:
    """Return the token if it is active, the username is its own and it covers `target`."""
    now = now or utcnow()
    token = find_active(username, secret, now=now)
    if token is None or (target is not None and not covers(token, target)):
        return None
    touch(token.id, ip, now=now)
    return token


def touch(token_id: int, ip: Optional[str], *, now: Optional[datetime] = None) -> bool:
    """Record a use, at most once per LAST_USED_INTERVAL."""
    return secret_tokens.touch(DeployToken, token_id, ip, now=now)
