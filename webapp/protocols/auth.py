"""Credentials for machine requests: parse them once, resolve them to a Principal."""
import base64
import binascii
from typing import Optional

from flask import Request, Response

from ..services import auth_ban, credentials
from ..services.policy import ANONYMOUS, Principal

REALM = "Gatehouse"


class BadCredentials(Exception):
    """Credentials were sent but match nothing: answer 401 (and count a failure)."""


class Banned(Exception):
    """The client IP failed authentication too often: answer 403 before anything else."""


def basic_credentials(request: Request) -> Optional[tuple[str, str]]:
    """Return (username, password) from an `Authorization: Basic` header, or None.

    Decoded by hand rather than with werkzeug's parser so that a malformed header is
    treated as wrong credentials instead of silently as none.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadCredentials("malformed basic credentials")
    username, sep, password = decoded.partition(":")
    if not sep:
        raise BadCredentials("malformed basic credentials")
    return username, password


def bearer_token(request: Request) -> Optional[str]:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def principal_from_basic(request: Request) -> Principal:
    """Resolve basic auth (deploy token with its username, or a user's password).

    No credentials → ANONYMOUS; credentials that match nothing → BadCredentials.
    """
    pair = basic_credentials(request)
    if pair is None:
        return ANONYMOUS
    principal = credentials.from_basic(*pair)
    if principal is None:
        raise BadCredentials("wrong username or token")
    return principal


def principal_behind_ban(request: Request) -> Principal:
    """`principal_from_basic` behind the failed-authentication ban (git and /jwt/auth).

    A banned IP raises Banned before its credentials are looked at; wrong credentials
    count towards a ban and raise BadCredentials; good ones reset the IP's count.
    """
    ip = request.remote_addr or ""
    if auth_ban.is_banned(ip):
        raise Banned(auth_ban.BANNED_MESSAGE)
    try:
        principal = principal_from_basic(request)
    except BadCredentials:
        auth_ban.record_failure(ip)
        raise
    if not principal.is_anonymous:
        auth_ban.record_success(ip)
    return principal


def challenge(message: str = "HTTP Basic: Access denied", realm: str = REALM) -> Response:
    """A 401 that makes clients like git retry with the credentials they hold."""
    return Response(message + "\n", 401, {
        "WWW-Authenticate": f'Basic realm="{realm}"',
        "Content-Type": "text/plain; charset=utf-8",
    })
