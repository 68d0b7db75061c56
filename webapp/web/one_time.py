"""The one-time token of a create form, so that a double submit creates one token."""
import hashlib
import secrets
import time
from typing import Callable, Optional

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..services import one_time_forms

SALT = "gatehouse.one-time-form"
MAX_AGE = 24 * 3600  # a create form left open for a day must be reloaded
# How long a repeated submit waits for the first one to finish (seconds, polled).
WAIT = 5.0
POLL = 0.1


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def issue(user_id: int) -> str:
    """A fresh token for one rendering of a create form."""
    return _serializer().dumps({"u": user_id, "n": secrets.token_urlsafe(16)})


def digest_of(token: Optional[str], user_id: int) -> Optional[str]:
    """The digest a submit claims, or None for a token that is forged, stale or another's."""
    try:
        data = _serializer().loads(token or "", max_age=MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("u") != user_id:
        return None
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def submit_once(digest: str, user_id: int, create: Callable[[], Optional[dict]]):
    """Run `create` for the first submit of a form; for a repeat, return the first's result.

    `create` returns the result to show (kept for a repeat) or None when it refused the
    input (the form may then be sent again). Returns (result, repeated).
    """
    deadline = time.monotonic() + WAIT
    while True:
        if one_time_forms.claim(digest, user_id):
            try:
                result = create()
            except BaseException:
                one_time_forms.release(digest)
                raise
            if result is None:
                one_time_forms.release(digest)
            else:
                one_time_forms.keep_result(digest, result)
            return result, False
        earlier = one_time_forms.take_result(digest, user_id)
        if earlier is one_time_forms.GONE and time.monotonic() <= deadline:
            continue  # the first submit was refused: this one is the first now
        if earlier not in (one_time_forms.PENDING, one_time_forms.GONE) \
                or time.monotonic() > deadline:
            return (earlier if isinstance(earlier, dict) else None), True
        time.sleep(POLL)
