"""Personal access tokens: create, list, revoke, and authenticate API callers with them."""
import secrets
from datetime import datetime, timedelta
from typing import Optional

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import PAT_SCOPES, PersonalAccessToken, User, utcnow
from . import audit
from .deploy_tokens import digest
from .errors import Invalid, NotFound

PREFIX = "glpat-"
SECRET_LENGTH = 20  # characters after the prefix, as GitLab's


def generate_secret() -> str:
    # 15 random bytes are exactly 20 URL-safe base64 characters, with no padding.
    body = secrets.token_urlsafe(15)
    assert len(body) == SECRET_LENGTH
    return PREFIX + body


def validate(name: Optional[str], scopes: list[str], expires_at: Optional[datetime], *,
             now: datetime) -> dict[str, list[str]]:
    """Return every rule the input breaks, by field; empty when it is valid."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = ["Name can't be blank"]
    elif len(name) > 255:
        errors["name"] = ["Name is too long (maximum is 255 characters)"]
    unknown = [s for s in scopes if s not in PAT_SCOPES]
    if unknown:
        errors["scopes"] = [f"Unknown scope: {', '.join(unknown)}. Valid scopes are "
                            f"{', '.join(PAT_SCOPES)}"]
    elif not scopes:
        errors["scopes"] = ["Scopes can't be blank: select at least one scope"]
    if expires_at is not None and expires_at <= now:
        errors["expires_at"] = ["Expiration date must be in the future"]
    return errors


def create(user: User, *, name: Optional[str], scopes: list[str],
           expires_at: Optional[datetime] = None, ip: Optional[str] = None,
           now: Optional[datetime] = None) -> tuple[PersonalAccessToken, str]:
    """Create a token for `user`; return it with its secret, shown once."""
    now = now or utcnow()
    scopes = list(dict.fromkeys(s.strip() for s in scopes if s and s.strip()))
    errors = validate(name, scopes, expires_at, now=now)
    if errors:
        raise Invalid(errors)
    secret = generate_secret()
    token = PersonalAccessToken(
        user_id=user.id, name=name.strip(), token_digest=digest(secret),
        scope_names=",".join(s for s in PAT_SCOPES if s in scopes),
        expires_at=expires_at, created_at=now)
    db.session.add(token)
    db.session.flush()
    audit.record("personal_access_token_created", token, actor=user, ip=ip,
                 name=token.name, scopes=token.scopes)
    db.session.commit()
    return token, secret


def list_for(user: User, *, active: Optional[bool] = None,
             now: Optional[datetime] = None) -> list[PersonalAccessToken]:
    """The user's tokens, newest first; `active` filters on revoked and expiry."""
    now = now or utcnow()
    query = (sa.select(PersonalAccessToken).where(PersonalAccessToken.user_id == user.id)
             .order_by(PersonalAccessToken.id.desc()))
    if active is not None:
        live = sa.and_(PersonalAccessToken.revoked.is_(False),
                       sa.or_(PersonalAccessToken.expires_at.is_(None),
                              PersonalAccessToken.expires_at > now))
        query = query.where(live if active else sa.not_(live))
    return list(db.session.scalars(query))


def get_for(user: User, token_id: int) -> PersonalAccessToken:
    token = db.session.scalar(sa.select(PersonalAccessToken).where(
        PersonalAccessToken.user_id == user.id, PersonalAccessToken.id == token_id))
    if token is None:
        raise NotFound("Personal access token not found")
    return token


def revoke(user: User, token_id: int, *, ip: Optional[str] = None,
           now: Optional[datetime] = None) -> PersonalAccessToken:
    """Revoke one of the user's tokens for good; revoking twice changes nothing."""
    token = get_for(user, token_id)
    if not token.revoked:
        token.revoked = True
        token.revoked_at = now or utcnow()
        audit.record("personal_access_token_revoked", token, actor=user, ip=ip,
                     name=token.name, scopes=token.scopes)
        db.session.commit()
    return token


def find_active_by_secret(secret: str, *, now: Optional[datetime] = None
                          ) -> Optional[PersonalAccessToken]:
    """Return the active token with this secret, or None."""
    if not secret:
        return None
    # Looked up by the digest's unique index: nothing about the secret leaks by timing.
    token = db.session.scalar(sa.select(PersonalAccessToken).where(
        PersonalAccessToken.token_digest == digest(secret)))
    if token is None or not token.active_at(now or utcnow()):
        return None
    return token


def touch(token_id: int, ip: Optional[str], *, now: Optional[datetime] = None) -> bool:
    """Record a use, at most once per LAST_USED_INTERVAL, in one conditional UPDATE."""
    now = now or utcnow()
    stale = now - timedelta(seconds=current_app.config["LAST_USED_INTERVAL"])
    result = db.session.execute(
        sa.update(PersonalAccessToken)
        .where(PersonalAccessToken.id == token_id,
               sa.or_(PersonalAccessToken.last_used_at.is_(None),
                      PersonalAccessToken.last_used_at < stale))
        .values(last_used_at=now, last_used_ip=ip)
        .execution_options(synchronize_session=False))
    db.session.commit()
    return result.rowcount > 0
