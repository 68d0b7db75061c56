"""The one authentication chain: whatever credentials a request carried become a Principal.

Every door (git, /jwt/auth, each package format, the REST API, /ci/variables, the sign-in
form) parses what the client sent into `Credentials` and calls `authenticate` with its
own `Door`: the kinds of credential it accepts. The chain, in this order and nowhere
else:

1. the failed-login ban: a banned IP gets 403 before anything is looked up;
2. the lookup: tokens by the digest of their secret, users by name with their password
   (an unknown user costs the same password hash as a known one, so timing tells
   nothing), the per-account password lock;
3. failure accounting (every failed lookup counts towards the IP's ban, every wrong
   password towards its account's lock) or success accounting (the account's count
   clears; the IP's count does not, so someone's good logins never pay for guesses
   against another account);
4. the token's address allowlist (a refusal counts as a failed attempt, step 3);
5. the record of the token's last use.

It returns one Principal or raises a domain error that the door turns into its own wire
format.
"""
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import sqlalchemy as sa
from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import User, utcnow
from . import audit, auth_ban, deploy_tokens, personal_access_tokens, runners
from .errors import (AccountLocked, AddressNotAllowed, Banned, CredentialRefused, Malformed,
                     Unauthenticated)
from .policy import ANONYMOUS, Principal, PrincipalKind
from .secret_tokens import KINDS, has_control_characters

DEPLOY_TOKEN = deploy_tokens.DEPLOY_TOKENS.key
PERSONAL_ACCESS_TOKEN = personal_access_tokens.PERSONAL_ACCESS_TOKENS.key
RUNNER_TOKEN = runners.RUNNER_TOKENS.key
ALL_TOKENS = frozenset(KINDS)
WRONG = "HTTP Basic: Access denied"


@dataclass(frozen=True)
class Door:
    """What one entry point accepts: user passwords, and which token kinds, sent how."""

    name: str
    passwords: bool = False
    # Kinds accepted as the password of basic auth (a deploy token with its own username).
    basic_tokens: frozenset[str] = frozenset()
    # Kinds accepted as a bare secret (Bearer, Deploy-Token, PRIVATE-TOKEN, ...).
    bare_tokens: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Credentials:
    """What a client presented, as its door parsed it; nothing is checked yet."""

    username: Optional[str] = None   # basic auth or the sign-in form
    password: Optional[str] = None
    secret: Optional[str] = None     # a bare token
    secret_kinds: frozenset[str] = ALL_TOKENS  # the kinds its header may carry
    job_token: bool = False          # GitLab CI's JOB-TOKEN: recognised, refused
    malformed: bool = False          # an Authorization header that does not parse

    @property
    def present(self) -> bool:
        return (self.username is not None or self.secret is not None or self.job_token
                or self.malformed)


NONE = Credentials()


def authenticate(credentials: Credentials, door: Door, *, ip: Optional[str]) -> Principal:
    """Run the chain: the ban, the lookup, the accounting, the record of use."""
    if auth_ban.is_banned(ip):
        raise Banned(auth_ban.BANNED_MESSAGE)
    if not credentials.present:
        return ANONYMOUS
    if credentials.job_token:
        raise CredentialRefused("CI job tokens are not supported by Gatehouse: use a deploy "
                                "token or a personal access token")
    if _malformed(credentials):
        raise Malformed("Credentials must not contain control characters")
    if not _acceptable(credentials, door):
        # Nothing was looked up, so nothing was guessed: this does not count.
        raise CredentialRefused(_accepted_here(door))
    try:
        principal = _lookup(credentials, door, ip)
    except (Unauthenticated, AccountLocked, AddressNotAllowed):
        auth_ban.record_failure(ip)
        raise
    record_use(principal, ip)
    return principal


def _malformed(credentials: Credentials) -> bool:
    # A name is looked up (PostgreSQL refuses NUL outright); secrets are only hashed, so
    # for them only C0 and C1 control characters are refused.
    if credentials.username is not None and has_control_characters(credentials.username):
        return True
    return any(value is not None and any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in value)
               for value in (credentials.password, credentials.secret))


def _acceptable(credentials: Credentials, door: Door) -> bool:
    if credentials.malformed:
        return True  # a broken header is a failed attempt wherever it is sent
    if credentials.secret is not None:
        return bool(credentials.secret_kinds & door.bare_tokens)
    return door.passwords or bool(door.basic_tokens)


def _accepted_here(door: Door) -> str:
    kinds = sorted(door.bare_tokens | door.basic_tokens)
    names = [k.replace("_", " ") + "s" for k in kinds] + (["passwords"] if door.passwords else [])
    return "This endpoint accepts only " + " and ".join(names or ["no credentials"])


def _lookup(credentials: Credentials, door: Door, ip: Optional[str]) -> Principal:
    if credentials.malformed:
        raise Unauthenticated(WRONG)
    if credentials.secret is not None:
        for key in sorted(credentials.secret_kinds & door.bare_tokens):
            token = KINDS[key].find_active(credentials.secret)
            if token is not None:
                return for_token(key, _from_allowed_address(key, token, ip, door))
        raise Unauthenticated("Unknown, revoked or expired token")
    username, password = credentials.username or "", credentials.password or ""
    if DEPLOY_TOKEN in door.basic_tokens:
        token = deploy_tokens.find_active(username, password)
        if token is not None:
            return for_token(DEPLOY_TOKEN, _from_allowed_address(DEPLOY_TOKEN, token, ip, door))
    if door.passwords:
        return for_user(_check_password(username, password))
    raise Unauthenticated(WRONG)


def _from_allowed_address(key: str, token, ip: Optional[str], door: Door):
    """The token, when its allowlist (if any) holds the client's address; else refuse."""
    if token.allows_address(ip):
        return token
    kind = KINDS[key]
    audit.record(f"{key}_address_refused", token, actor=None, ip=ip, door=door.name,
                 **kind.audit_details(token))
    db.session.commit()
    raise AddressNotAllowed(f"This {kind.label.lower()} is not allowed from this address "
                            f"({ip or 'unknown'})")


# ---------------------------------------------------------------- passwords


def find_login(login: str) -> Optional[User]:
    """The user whose username (or e-mail address) this is."""
    return db.session.scalar(sa.select(User).where(
        sa.or_(User.username == login, User.email == login)))


def _check_password(login: str, password: str) -> User:
    """The user, when the password is theirs and their account is not locked; else raise."""
    now = utcnow()
    user = find_login(login) if login else None
    if user is None:
        # The same work as a real check, so a missing account cannot be told by timing.
        check_password_hash(_dummy_hash(), password)
        raise Unauthenticated(WRONG)
    if user.locked_until is not None and user.locked_until > now:
        minutes = max(1, int((user.locked_until - now).total_seconds() + 59) // 60)
        raise AccountLocked(
            f"Your account is locked after too many failed sign-in attempts. Try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''}, or use a token.")
    if not user.check_password(password):
        _count_wrong_password(user.id, now)
        raise Unauthenticated(WRONG)
    if user.failed_attempts:
        db.session.execute(sa.update(User).where(User.id == user.id)
                           .values(failed_attempts=0, locked_until=None)
                           .execution_options(synchronize_session=False))
        db.session.commit()
    return user


def _count_wrong_password(user_id: int, now) -> None:
    """One more wrong password; the one that reaches the limit locks the account."""
    config = current_app.config
    limit = int(config["ACCOUNT_LOCK_ATTEMPTS"])
    reached = User.failed_attempts + 1 >= limit
    db.session.execute(
        sa.update(User).where(User.id == user_id)
        .values(failed_attempts=sa.case((reached, 0), else_=User.failed_attempts + 1),
                locked_until=sa.case(
                    (reached, now + timedelta(seconds=float(config["ACCOUNT_LOCK_TIME"]))),
                    else_=User.locked_until))
        .execution_options(synchronize_session=False))
    db.session.commit()


def _dummy_hash() -> str:
    # Made once per process with the configured method, so it costs what a real one does.
    cache = current_app.extensions.setdefault("gatehouse_dummy_hash", {})
    method = current_app.config["PASSWORD_HASH_METHOD"]
    if method not in cache:
        cache[method] = generate_password_hash("not a password", method=method)
    return cache[method]


# ---------------------------------------------------------------- principals


def for_user(user: Optional[User]) -> Principal:
    if user is None:
        return ANONYMOUS
    return Principal(PrincipalKind.USER, name=user.username, user_id=user.id,
                     is_admin=user.is_admin)


def for_token(key: str, token) -> Principal:
    """The Principal a token acts as."""
    common = dict(token_id=token.id, scopes=frozenset(token.scopes),
                  last_used_at=token.last_used_at)
    if key == PERSONAL_ACCESS_TOKEN:
        user = token.user  # acts as its user, narrowed by its scopes
        return Principal(PrincipalKind.PERSONAL_ACCESS_TOKEN, name=user.username,
                         user_id=user.id, is_admin=user.is_admin, **common)
    if key == RUNNER_TOKEN:
        return Principal(PrincipalKind.RUNNER, name=f"runner-{token.id}",
                         project_id=token.project_id, **common)
    return Principal(PrincipalKind.DEPLOY_TOKEN, name=token.username,
                     project_id=token.project_id, group_id=token.group_id, **common)


def record_use(principal: Principal, ip: Optional[str]) -> None:
    """Note a successful use of a token, at most once per LAST_USED_INTERVAL.

    On the hot path (every authenticated request) a use recorded recently, as seen when
    the token was loaded, costs no query at all.
    """
    kind = KINDS.get(principal.kind)
    if kind is None or principal.token_id is None:
        return
    kind.touch(principal.token_id, ip, seen=principal.last_used_at)
