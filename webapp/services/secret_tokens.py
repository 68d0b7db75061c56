"""What every kind of secret token shares: how it is made, stored, checked and touched.

Deploy tokens, personal access tokens and runner tokens all hold a prefixed random
secret shown once, keep only its SHA-256 digest, may expire, can be revoked for good,
and record their last use without turning every read into a write.
"""
import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Iterable, Optional

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import utcnow

SECRET_LENGTH = 20  # characters after the prefix, as GitLab's


def generate(prefix: str) -> str:
    """A new secret: the prefix and 20 URL-safe characters (120 random bits)."""
    # 15 random bytes are exactly 20 URL-safe base64 characters, with no padding.
    body = secrets.token_urlsafe(15)
    assert len(body) == SECRET_LENGTH
    return prefix + body


def digest(secret: str) -> str:
    """Return the stored form of a secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def by_secret(model, secret: Optional[str]):
    """The row whose digest matches, or None.

    Looked up by the digest's unique index: nothing about the secret leaks through timing.
    """
    if not secret:
        return None
    return db.session.scalar(sa.select(model).where(model.token_digest == digest(secret)))


def live(model, now: datetime):
    """SQL condition: not revoked and, for models that expire, not expired."""
    condition = model.revoked.is_(False)
    if hasattr(model, "expires_at"):
        condition = sa.and_(condition, sa.or_(model.expires_at.is_(None), model.expires_at > now))
    return condition


def check_common(name: Optional[str], scopes: Iterable[str], valid_scopes: Iterable[str],
                 expires_at: Optional[datetime], *, now: datetime) -> dict[str, list[str]]:
    """The rules names, scopes and expiry share; returns errors by field."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = ["Name can't be blank"]
    elif len(name) > 255:
        errors["name"] = ["Name is too long (maximum is 255 characters)"]
    valid_scopes = list(valid_scopes)
    unknown = [s for s in scopes if s not in valid_scopes]
    if unknown:
        errors["scopes"] = [f"Unknown scope: {', '.join(unknown)}. Valid scopes are "
                            f"{', '.join(valid_scopes)}"]
    elif not scopes:
        errors["scopes"] = ["Scopes can't be blank: select at least one scope"]
    if expires_at is not None and expires_at <= now:
        errors["expires_at"] = ["Expiration date must be in the future"]
    return errors


def clean_scopes(scopes: Iterable[str]) -> list[str]:
    """Strip, drop blanks and repeats, keep the order given."""
    return list(dict.fromkeys(s.strip() for s in scopes if s and s.strip()))


def mark_revoked(token, now: Optional[datetime] = None) -> bool:
    """Revoke a token row (not committed); False when it already was."""
    if token.revoked:
        return False
    token.revoked = True
    token.revoked_at = now or utcnow()
    return True


def touch(model, token_id: int, ip: Optional[str], *, now: Optional[datetime] = None,
          seen: Optional[datetime] = None) -> bool:
    """Record a use, at most once per LAST_USED_INTERVAL, in one conditional UPDATE.

    `seen` is the last use as already loaded; when it is recent nothing is sent at all.
    The UPDATE's own condition keeps concurrent workers from writing twice.
    """
    now = now or utcnow()
    stale = now - timedelta(seconds=current_app.config["LAST_USED_INTERVAL"])
    if seen is not None and seen >= stale:
        return False
    result = db.session.execute(
        sa.update(model)
        .where(model.id == token_id,
               sa.or_(model.last_used_at.is_(None), model.last_used_at < stale))
        .values(last_used_at=now, last_used_ip=ip)
        .execution_options(synchronize_session=False))
    db.session.commit()
    return result.rowcount > 0
