"""One service for every kind of secret token: deploy, personal access and runner tokens.

Every kind holds a prefixed random secret shown once, keeps only its SHA-256 digest, may
expire, can be revoked for good, and records its last use without turning every read
into a write. What differs between kinds is data, a `TokenKind`: the model, the prefix,
the scopes, who owns a token, what the audit log calls it. Each kind's module declares
its one `TokenKind` and keeps only the rules that are really its own.
"""
import hashlib
import ipaddress
import re
import secrets
import unicodedata
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping, Optional

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import current_app

from ..extensions import db
from ..models import User, iso8601, utcnow
from . import audit
from .errors import Invalid, NotFound

SECRET_LENGTH = 20  # random characters after the prefix, as GitLab's
CHECKSUM_LENGTH = 6  # base62 of a CRC32 (at most 4294967295 < 62**6)
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
NAME_MAX = 255
# How long the previous secret keeps working after a rotation, unless told otherwise.
DEFAULT_GRACE_PERIOD = timedelta(hours=24)
MAX_GRACE_PERIOD = timedelta(days=7)
MAX_ALLOWED_IPS = 100
# Rotation keeps the expiry unless a new one is given (None is "never", so not the default).
KEEP = object()

# Every kind, by its key (which is also the Principal kind it authenticates as).
KINDS: dict[str, "TokenKind"] = {}


def checksum(text: str) -> str:
    """CRC32 of `text` in 6 base62 characters (GitHub's tokens carry one the same way)."""
    value = zlib.crc32(text.encode("utf-8"))
    digits = []
    for _ in range(CHECKSUM_LENGTH):
        value, rest = divmod(value, 62)
        digits.append(BASE62[rest])
    return "".join(reversed(digits))


def generate(prefix: str) -> str:
    """A new secret: the prefix, 20 URL-safe characters (120 random bits) and a checksum.

    The checksum (of prefix and random part) lets a secret scanner tell a real token from
    noise offline; it adds nothing to the secret's strength. Secrets made before it
    existed (no checksum) keep working: lookup is by digest only.
    """
    # 15 random bytes are exactly 20 URL-safe base64 characters, with no padding.
    body = secrets.token_urlsafe(15)
    assert len(body) == SECRET_LENGTH
    return prefix + body + checksum(prefix + body)


def has_valid_checksum(secret: str, prefix: str) -> bool:
    """Whether `secret` is prefix + 20 characters + their checksum, as new secrets are."""
    body = secret[len(prefix):]
    return (secret.startswith(prefix) and len(body) == SECRET_LENGTH + CHECKSUM_LENGTH
            and checksum(prefix + body[:SECRET_LENGTH]) == body[SECRET_LENGTH:])


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


def check_grace_period(seconds: int) -> dict[str, list[str]]:
    """The rule a grace period breaks, by field; empty when it is valid."""
    if not 0 <= seconds <= MAX_GRACE_PERIOD.total_seconds():
        return {"grace_period": [
            f"Grace period must be between 0 and {int(MAX_GRACE_PERIOD.total_seconds())} "
            f"seconds (7 days); got {seconds}"]}
    return {}


def parse_allowed_ips(raw: Any) -> tuple[Optional[str], dict[str, list[str]]]:
    """An allowlist (addresses and CIDR ranges, as a list or separated by commas or spaces)
    as the stored text of normalised networks, with the errors by field.

    Empty means no allowlist: the token works from anywhere.
    """
    if raw is None:
        return None, {}
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        return None, {"allowed_ips": ["Allowed IPs must be a list of addresses or CIDR ranges"]}
    entries = [e for item in items for e in re.split(r"[\s,]+", item) if e]
    if len(entries) > MAX_ALLOWED_IPS:
        return None, {"allowed_ips": [f"Allowed IPs can hold at most {MAX_ALLOWED_IPS} entries"]}
    networks, problems = [], []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            shown = entry if len(entry) <= 64 and not has_control_characters(entry) else "an entry"
            problems.append(f"{shown} is not an IPv4 or IPv6 address or CIDR range "
                            f"(like 192.0.2.0/24 or 2001:db8::/32)")
            continue
        if str(network) not in networks:
            networks.append(str(network))
    if problems:
        return None, {"allowed_ips": problems}
    return (",".join(networks) or None), {}


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
    # Called with (token, secret) before the commit whenever a token gets a new secret
    # (created or rotated).
    on_secret: Optional[Callable[[Any, str], None]] = None
    # Called with (event, token) before the commit of a change: "created", "rotated",
    # "revoked" (deploy tokens queue their webhooks here).
    on_event: Optional[Callable[[str, Any], None]] = None
    # Relationships loaded in the same query as the token when a secret is looked up: the
    # owner the door asks about next (a deploy token's project, a PAT's user) then costs
    # no second query.
    loaded_with: tuple[str, ...] = ()
    # The row whose current or previous digest is `:digest`. Built once: building a
    # statement costs more CPU than running it, and every authenticated request runs it.
    by_digest: sa.Select = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        KINDS[self.key] = self
        wanted, model = sa.bindparam("digest"), self.model
        object.__setattr__(self, "by_digest", sa.select(model).where(sa.or_(
            model.token_digest == wanted, model.previous_token_digest == wanted)).options(
            *(so.joinedload(getattr(model, name)) for name in self.loaded_with)).limit(1))

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
               errors: Optional[dict[str, list[str]]] = None, allowed_ips: Any = None,
               **columns) -> tuple[Any, str]:
        """Create a token for `owner`; return it with its secret, shown once.

        `errors` are the kind's own rule breaks, reported together with the common ones;
        `columns` are the kind's own column values. `allowed_ips`: see parse_allowed_ips.
        """
        now = now or utcnow()
        scopes = clean_scopes(scopes)
        found = self.validate(name, scopes, expires_at, now=now)
        networks, ip_errors = parse_allowed_ips(allowed_ips)
        for key, messages in [*(errors or {}).items(), *ip_errors.items()]:
            found.setdefault(key, []).extend(messages)
        if found:
            raise Invalid(found)
        secret = generate(self.prefix())
        token = self.model(
            token_digest=digest(secret), scope_names=",".join(s for s in self.scopes if s in scopes),
            expires_at=expires_at, created_at=now, allowed_ips=networks,
            **{self.name_field: (name or "").strip()}, **self.owner_values(owner), **columns)
        db.session.add(token)
        db.session.flush()  # the audit event and some kinds' rules need the id
        if self.on_secret is not None:
            self.on_secret(token, secret)
        audit.record(f"{self.key}_created", token, actor=actor, ip=ip, **self.audit_details(token))
        self.event("created", token)
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

    def get_for(self, owner, token_id: int, *, for_update: bool = False):
        """The owner's token with this id, or NotFound."""
        query = self.select(owner).where(self.model.id == token_id)
        if for_update:
            query = query.with_for_update()
        token = db.session.scalar(query)
        if token is None:
            raise NotFound(f"{self.label} not found")
        return token

    def find_active(self, secret: Optional[str], *, now: Optional[datetime] = None):
        """The active token with this secret (or its previous one, during a rotation's
        grace period), or None.

        Looked up by the digests' unique indexes: nothing about the secret leaks through
        timing, and a revoked, expired, rotated-out or unknown secret all answer alike.
        """
        if not secret:
            return None
        now = now or utcnow()
        wanted = digest(secret)
        token = db.session.scalar(self.by_digest, {"digest": wanted})
        # The session's identity map holds objects weakly: keep the token (and the owner
        # loaded with it) for the rest of the session, so the door's next lookup of that
        # owner finds it there (accounts.find_project_among) instead of asking the database.
        db.session.info["found_token"] = token
        if token is None or not token.active_at(now):
            return None
        # Which digest matched (both were found through the index; no secret is compared).
        if token.token_digest != wanted and not token.in_grace_at(now):
            return None
        return token

    def find_any(self, secret: str) -> tuple[Any, str]:
        """The token this secret is (or was, before a rotation), whatever its state, and
        which one it matched: "current" or "previous"; (None, "") when none."""
        wanted = digest(secret)
        token = db.session.scalar(self.by_digest, {"digest": wanted})
        if token is None:
            return None, ""
        return token, "current" if token.token_digest == wanted else "previous"

    # ------------------------------------------------------------------ change

    def revoke(self, owner, token_id: int, *, actor: Optional[User] = None,
               ip: Optional[str] = None, now: Optional[datetime] = None):
        """Revoke a token for good. Revoking a revoked token changes nothing."""
        token = self.get_for(owner, token_id)
        if mark_revoked(token, now):
            audit.record(f"{self.key}_revoked", token, actor=actor, ip=ip,
                         **self.audit_details(token))
            self.event("revoked", token)
            db.session.commit()
        return token

    def rotate(self, owner, token_id: int, *, expires_at: Any = KEEP,
               grace_period: Optional[int] = None, actor: Optional[User] = None,
               ip: Optional[str] = None, now: Optional[datetime] = None) -> tuple[Any, str]:
        """Give a token a new secret, shown once; the old one works `grace_period` seconds
        more (default 24 hours, at most 7 days, 0 ends it now).

        The token keeps its id, name, username and scopes. A second rotation ends the
        first one's grace period at once: only the secret just replaced stays valid.
        `expires_at` replaces the expiry when given (None: never).
        """
        now = now or utcnow()
        seconds = (int(DEFAULT_GRACE_PERIOD.total_seconds()) if grace_period is None
                   else grace_period)
        errors = check_grace_period(seconds)
        if expires_at is not KEEP and expires_at is not None and expires_at <= now:
            errors["expires_at"] = ["Expiration date must be in the future"]
        token = self.get_for(owner, token_id, for_update=True)
        if not token.active_at(now):
            errors["token"] = [f"{self.label} is revoked or expired: only an active token "
                               f"can be rotated"]
        if errors:
            db.session.rollback()
            raise Invalid(errors)
        secret = generate(self.prefix())
        if seconds > 0:
            token.previous_token_digest = token.token_digest
            token.previous_expires_at = now + timedelta(seconds=seconds)
        else:
            token.previous_token_digest = token.previous_expires_at = None
        token.token_digest = digest(secret)
        if expires_at is not KEEP:
            token.expires_at = expires_at
        if self.on_secret is not None:
            self.on_secret(token, secret)
        audit.record(f"{self.key}_rotated", token, actor=actor, ip=ip,
                     previous_valid_until=iso8601(token.previous_expires_at),
                     expires_at=iso8601(token.expires_at), **self.audit_details(token))
        self.event("rotated", token)
        db.session.commit()
        return token, secret

    def event(self, name: str, token) -> None:
        """Tell the kind's listeners (if any) about a change, inside its transaction."""
        if self.on_event is not None:
            self.on_event(name, token)

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


# ---------------------------------------------------------------------- leaked values


@dataclass(frozen=True)
class Identified:
    """What a secret value is: its kind, its token, and whether it is the current secret."""

    kind: TokenKind
    token: Any
    matched: str  # "current", or "previous" (the secret replaced by the last rotation)

    def state(self, now: datetime) -> str:
        """active, revoked, expired, or for a previous secret: in_grace or rotated."""
        token = self.token
        if token.revoked:
            return "revoked"
        if token.expired_at(now):
            return "expired"
        if self.matched == "previous":
            return "in_grace" if token.in_grace_at(now) else "rotated"
        return "active"


def identify(secret: str) -> Optional[Identified]:
    """The token a value belongs to, of any kind and in any state, or None.

    The kind whose prefix the value carries is asked first; the others too, since a
    deploy token prefix is configurable.
    """
    secret = (secret or "").strip()
    if not secret or has_control_characters(secret):
        return None
    kinds = sorted(KINDS.values(), key=lambda k: not secret.startswith(k.prefix()))
    for kind in kinds:
        token, matched = kind.find_any(secret)
        if token is not None:
            return Identified(kind, token, matched)
    return None


def revoke_value(secret: str, *, actor: Optional[User] = None, ip: Optional[str] = None,
                 now: Optional[datetime] = None) -> Optional[Identified]:
    """Make a leaked value useless; return what it was, or None when it is unknown.

    A current secret revokes its token. A previous secret (replaced by a rotation) only
    loses the rest of its grace period: the token's new secret was not leaked.
    """
    now = now or utcnow()
    found = identify(secret)
    if found is None:
        return None
    kind, token = found.kind, found.token
    if found.matched == "current":
        if mark_revoked(token, now):
            audit.record(f"{kind.key}_revoked", token, actor=actor, ip=ip, leaked=True,
                         **kind.audit_details(token))
            kind.event("revoked", token)
    elif token.in_grace_at(now):
        token.previous_expires_at = now
        audit.record(f"{kind.key}_previous_secret_revoked", token, actor=actor, ip=ip,
                     leaked=True, **kind.audit_details(token))
    db.session.commit()
    return found
