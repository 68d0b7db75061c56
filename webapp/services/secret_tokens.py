"""One service for every kind of secret token: deploy, personal access and runner tokens.

Every kind holds a prefixed random secret shown once, keeps only its SHA-256 digest, may
expire, can be revoked for good, and records its last use without turning every read
into a write. What differs between kinds is data, a `TokenKind`: the model, the prefix,
the scopes, who owns a token, what the audit log calls it. Each kind's module declares
its one `TokenKind` and keeps only the rules that are really its own.
"""
import hashlib
import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping, Optional

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import User, utcnow
from . import audit
from .errors import Invalid, NotFound

SECRET_LENGTH = 20  # characters after the prefix, as GitLab's
NAME_MAX = 255

# Every kind, by its key (which is also the Principal kind it authenticates as).
KINDS: dict[str, "TokenKind"] = {}


def generate(prefix: str) -> str:
    """A new secret: the prefix and 20 URL-safe characters (120 random bits)."""
    # 15 random bytes are exactly 20 URL-safe base64 characters, with no padding.
    body = secrets.token_urlsafe(15)
    assert len(body) == SECRET_LENGTH
    return prefix + body


def digest(secret: str) -> str:
    """Return the stored form of a secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def clean_scopes(scopes: Iterable[str]) -> list[str]:
    """Strip, drop blanks and repeats, keep the order given."""
    return list(dict.fromkeys(s.strip() for s in scopes if s and s.strip()))


def has_control_characters(text: str) -> bool:
    """Control, format (bidirectional overrides, zero-width), line separators, unassigned."""
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
               for ch in text)


def check_text(value: str, field_label: str) -> list[str]:
    """The rules a short single-line text (a name, a username) obeys everywhere."""
    if len(value) > NAME_MAX:
        return [f"{field_label} is too long (maximum is {NAME_MAX} characters)"]
    if has_control_characters(value):
        return [f"{field_label} cannot contain control characters or invisible formatting "
                "characters (such as right-to-left overrides)"]
    return []


def mark_revoked(token, now: Optional[datetime] = None) -> bool:
    """Revoke a token row (not committed); False when it already was."""
    if token.revoked:
        return False
    token.revoked = True
    token.revoked_at = now or utcnow()
    return True


@dataclass(frozen=True)
class TokenKind:
    """What one kind of token is; its methods are the one service all kinds share."""

    key: str                      # "deploy_token": the Principal kind and audit prefix
    model: type
    label: str                    # "Deploy token", for messages
    prefix: Callable[[], str]     # read when a secret is made (it may come from config)
    owner_values: Callable[[Any], dict]       # owner → the row's owner columns
    owner_filter: Callable[[Any], Any]        # owner → SQL condition on the model
    audit_details: Callable[[Any], dict]      # token → details of its audit events
    scopes: Mapping[str, str] = field(default_factory=dict)  # name → description
    name_field: str = "name"      # the column and form field holding the token's name
    name_required: bool = True
    hidden: Optional[Callable[[type], Any]] = None  # SQL condition for rows never listed
    on_create: Optional[Callable[[Any, str], None]] = None  # token, secret (before commit)

    def __post_init__(self):
        KINDS[self.key] = self

    # ------------------------------------------------------------------ create

    def validate(self, name: Optional[str], scopes: list[str], expires_at: Optional[datetime],
                 *, now: datetime) -> dict[str, list[str]]:
        """Every rule the common fields break, by field; empty when they are valid."""
        errors: dict[str, list[str]] = {}
        label = self.name_field.capitalize()
        name = (name or "").strip()
        if not name and self.name_required:
            errors[self.name_field] = [f"{label} can't be blank"]
        elif problems := check_text(name, label):
            errors[self.name_field] = problems
        if self.scopes:
            valid = list(self.scopes)
            unknown = [s for s in scopes if s not in valid]
            if unknown:
                errors["scopes"] = [f"Unknown scope: {', '.join(unknown)}. Valid scopes are "
                                    f"{', '.join(valid)}"]
            elif not scopes:
                errors["scopes"] = ["Scopes can't be blank: select at least one scope"]
        if expires_at is not None and expires_at <= now:
            errors["expires_at"] = ["Expiration date must be in the future"]
        return errors

    def create(self, owner, *, name: Optional[str] = None, scopes: Iterable[str] = (),
               expires_at: Optional[datetime] = None, actor: Optional[User] = None,
               ip: Optional[str] = None, now: Optional[datetime] = None,
               errors: Optional[dict[str, list[str]]] = None, **columns) -> tuple[Any, str]:
        """Create a token for `owner`; return it with its secret, shown once.

        `errors` are the kind's own rule breaks, reported together with the common ones;
        `columns` are the kind's own column values.
        """
        now = now or utcnow()
        scopes = clean_scopes(scopes)
        found = self.validate(name, scopes, expires_at, now=now)
        for key, messages in (errors or {}).items():
            found.setdefault(key, []).extend(messages)
        if found:
            raise Invalid(found)
        secret = generate(self.prefix())
        token = self.model(
            token_digest=digest(secret), scope_names=",".join(s for s in self.scopes if s in scopes),
            expires_at=expires_at, created_at=now, **{self.name_field: (name or "").strip()},
            **self.owner_values(owner), **columns)
        db.session.add(token)
        db.session.flush()  # the audit event and some kinds' rules need the id
        if self.on_create is not None:
            self.on_create(token, secret)
        audit.record(f"{self.key}_created", token, actor=actor, ip=ip, **self.audit_details(token))
        db.session.commit()
        return token, secret

    # ------------------------------------------------------------------ read

    def live(self, now: datetime):
        """SQL condition: not revoked and not expired."""
        model = self.model
        return sa.and_(model.revoked.is_(False),
                       sa.or_(model.expires_at.is_(None), model.expires_at > now))

    def select(self, owner=None, *, active: Optional[bool] = None,
               now: Optional[datetime] = None, newest_first: bool = True) -> sa.Select:
        """A query for the tokens of `owner` (of everyone when None), newest first."""
        model = self.model
        query = sa.select(model).order_by(model.id.desc() if newest_first else model.id)
        if self.hidden is not None:
            query = query.where(sa.not_(self.hidden(model)))
        if owner is not None:
            query = query.where(self.owner_filter(owner))
        if active is not None:
            live = self.live(now or utcnow())
            query = query.where(live if active else sa.not_(live))
        return query

    def list_for(self, owner, *, active: Optional[bool] = None,
                 now: Optional[datetime] = None) -> list:
        """The owner's tokens, newest first; `active` filters on revoked and expiry."""
        return list(db.session.scalars(self.select(owner, active=active, now=now)))

    def get_for(self, owner, token_id: int):
        """The owner's token with this id, or NotFound."""
        query = self.select(owner).where(self.model.id == token_id)
        token = db.session.scalar(query)
        if token is None:
            raise NotFound(f"{self.label} not found")
        return token

    def find_active(self, secret: Optional[str], *, now: Optional[datetime] = None):
        """The active token with this secret, or None.

        Looked up by the digest's unique index: nothing about the secret leaks through
        timing, and a revoked, expired or unknown secret all answer alike.
        """
        if not secret:
            return None
        token = db.session.scalar(sa.select(self.model).where(
            self.model.token_digest == digest(secret)))
        if token is None or not token.active_at(now or utcnow()):
            return None
        return token

    # ------------------------------------------------------------------ change

    def revoke(self, owner, token_id: int, *, actor: Optional[User] = None,
               ip: Optional[str] = None, now: Optional[datetime] = None):
        """Revoke a token for good. Revoking a revoked token changes nothing."""
        token = self.get_for(owner, token_id)
        if mark_revoked(token, now):
            audit.record(f"{self.key}_revoked", token, actor=actor, ip=ip,
                         **self.audit_details(token))
            db.session.commit()
        return token

    def touch(self, token_id: int, ip: Optional[str], *, now: Optional[datetime] = None,
              seen: Optional[datetime] = None) -> bool:
        """Record a use, at most once per LAST_USED_INTERVAL, in one conditional UPDATE.

        `seen` is the last use as already loaded; when it is recent nothing is sent at all.
        The UPDATE's own condition keeps concurrent workers from writing twice.
        """
        now = now or utcnow()
        stale = now - timedelta(seconds=current_app.config["LAST_USED_INTERVAL"])
        if seen is not None and seen >= stale:
            return False
        model = self.model
        result = db.session.execute(
            sa.update(model)
            .where(model.id == token_id,
                   sa.or_(model.last_used_at.is_(None), model.last_used_at < stale))
            .values(last_used_at=now, last_used_ip=ip)
            .execution_options(synchronize_session=False))
        db.session.commit()
        return result.rowcount > 0
