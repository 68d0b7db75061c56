"""Personal access tokens: create, list, revoke, and authenticate API callers with them."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa

from ..extensions import db
from ..models import PAT_SCOPES, PersonalAccessToken, User, utcnow
from . import audit, secret_tokens
from .secret_tokens import digest
from .errors import Invalid, NotFound

PREFIX = "glpat-"


def generate_secret() -> str:
    return secret_tokens.generate(PREFIX)


def validate(name: Optional[str], scopes: list[str], expires_at: Optional[datetime], *,
             now: datetime) -> dict[str, list[str]]:
    """Return every rule the input breaks, by field; empty when it is valid."""
    return secret_tokens.check_common(name, scopes, PAT_SCOPES, expires_at, now=now)


def create(user: User, *, name: Optional[str], scopes: list[str],
           expires_at: Optional[datetime] = None, ip: Optional[str] = None,
           now: Optional[datetime] = None) -> tuple[PersonalAccessToken, str]:
    """Create a token for `user`; return it with its secret, shown once."""
    now = now or utcnow()
    scopes = secret_tokens.clean_scopes(scopes)
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
        live = secret_tokens.live(PersonalAccessToken, now)
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
    if secret_tokens.mark_revoked(token, now):
        audit.record("personal_access_token_revoked", token, actor=user, ip=ip,
                     name=token.name, scopes=token.scopes)
        db.session.commit()
    return token


def find_active_by_secret(secret: str, *, now: Optional[datetime] = None
                          ) -> Optional[PersonalAccessToken]:
    """Return the active token with this secret, or None."""
    token = secret_tokens.by_secret(PersonalAccessToken, secret)
    if token is None or not token.active_at(now or utcnow()):
        return None
    return token

