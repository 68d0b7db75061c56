"""Read a machine request's credentials once, and hand them to the one chain.

Each protocol blueprint declares its `Door` (what it accepts) and calls `authenticate`;
the chain (services/credentials.py) does the ban, the lookup, the accounting and the
record of use, and raises domain errors that the blueprint's own error handler turns
into its wire format.
"""
import base64
import binascii
from typing import Optional

from flask import Request, Response, request

from ..services import credentials
from ..services.credentials import DEPLOY_TOKEN, PERSONAL_ACCESS_TOKEN, Credentials, Door
from ..services.policy import Principal

REALM = "Gatehouse"

# Headers that carry a bare secret, and the token kinds each may carry; the first one
# present wins. GitLab's names: `Deploy-Token` (generic and Maven packages),
# `PRIVATE-TOKEN` (the API), `JOB-TOKEN` (CI jobs, which Gatehouse does not have).
SECRET_HEADERS = (
    ("Deploy-Token", frozenset({DEPLOY_TOKEN})),
    ("Private-Token", frozenset({PERSONAL_ACCESS_TOKEN})),
)
JOB_TOKEN_HEADER = "Job-Token"


def presented(req: Request) -> Credentials:
    """What the request carries: a header secret, Basic, Bearer, `private_token`, or none."""
    for header, kinds in SECRET_HEADERS:
        if header in req.headers:
            return Credentials(secret=req.headers[header].strip(), secret_kinds=kinds)
    if JOB_TOKEN_HEADER in req.headers or "job_token" in req.args:
        return Credentials(job_token=True)
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        return _basic(value)
    if scheme.lower() == "bearer":
        return Credentials(secret=value.strip())
    if scheme:
        return Credentials(malformed=True)
    if "private_token" in req.args:
        return Credentials(secret=req.args["private_token"],
                           secret_kinds=frozenset({PERSONAL_ACCESS_TOKEN}))
    return credentials.NONE


def _basic(value: str) -> Credentials:
    # Decoded by hand rather than with werkzeug's parser so that a malformed header is
    # a failed attempt instead of silently no credentials at all.
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return Credentials(malformed=True)
    username, sep, password = decoded.partition(":")
    if not sep:
        return Credentials(malformed=True)
    return Credentials(username=username, password=password)


def authenticate(door: Door, req: Optional[Request] = None) -> Principal:
    """The request's Principal through the one chain, or a domain error."""
    req = req or request
    return credentials.authenticate(presented(req), door, ip=req.remote_addr)


def challenge(message: str = credentials.WRONG, realm: str = REALM) -> Response:
    """A 401 that makes clients like git retry with the credentials they hold."""
    return Response(message + "\n", 401, {
        "WWW-Authenticate": f'Basic realm="{realm}"',
        "Content-Type": "text/plain; charset=utf-8",
    })
