"""One-time create forms: the second submit of a form finds the first one's result.

Without JavaScript a double click sends the same form twice and the browser shows only
the second answer. The first submit claims the form's digest (a primary key, so exactly
one submit wins, on every worker); its result, a secret shown once, is kept sealed
(AES-GCM, services/encryption) for REPEAT_WINDOW seconds so the repeat can show it, and
is wiped when read. Nothing here ever holds a secret in plain text.
"""
import json
from datetime import datetime, timedelta
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import FormSubmission, utcnow
from . import encryption

REPEAT_WINDOW = 60  # seconds a repeat may still see the first submit's result
KEEP = timedelta(days=1)  # claimed digests are remembered this long: a form is one day old at most
CONSUMED = ""


def _aad(digest: str) -> bytes:
    return b"form_submissions.result_encrypted:" + digest.encode("ascii")


def claim(digest: str, user_id: int, *, now: Optional[datetime] = None) -> bool:
    """Claim a form for its first submit; False when it was already claimed."""
    now = now or utcnow()
    db.session.execute(sa.delete(FormSubmission).where(FormSubmission.created_at < now - KEEP))
    db.session.execute(
        sa.update(FormSubmission)
        .where(FormSubmission.created_at < now - timedelta(seconds=REPEAT_WINDOW),
               FormSubmission.result_encrypted.is_not(None),
               FormSubmission.result_encrypted != CONSUMED)
        .values(result_encrypted=CONSUMED))
    db.session.add(FormSubmission(digest=digest, user_id=user_id, created_at=now))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def release(digest: str) -> None:
    """Give a claimed form back (its submit was refused): it may be sent again."""
    db.session.execute(sa.delete(FormSubmission).where(FormSubmission.digest == digest))
    db.session.commit()


def keep_result(digest: str, result: dict) -> None:
    """Seal what the first submit showed, for a repeat within REPEAT_WINDOW."""
    try:
        sealed = encryption.encrypt(json.dumps(result), _aad(digest))
    except encryption.EncryptionKeyError:
        sealed = CONSUMED  # no key: a repeat says the form was sent, without the secret
    db.session.execute(sa.update(FormSubmission).where(FormSubmission.digest == digest)
                       .values(result_encrypted=sealed))
    db.session.commit()


PENDING = object()  # the first submit is still running
GONE = object()  # the first submit was refused and released its claim


def take_result(digest: str, user_id: int, *, now: Optional[datetime] = None):
    """The first submit's result (once), None if already taken or too old, PENDING or GONE."""
    now = now or utcnow()
    row = db.session.execute(
        sa.select(FormSubmission.result_encrypted, FormSubmission.created_at, FormSubmission.user_id)
        .where(FormSubmission.digest == digest)).first()
    db.session.rollback()  # end the read: a caller polling must see other commits
    if row is None:
        return GONE
    sealed, created_at, owner = row
    if owner != user_id:
        return None
    if sealed is None:
        return PENDING
    if sealed == CONSUMED or created_at < now - timedelta(seconds=REPEAT_WINDOW):
        return None
    # Only the caller whose UPDATE wipes it gets to read it.
    wiped = db.session.execute(
        sa.update(FormSubmission)
        .where(FormSubmission.digest == digest, FormSubmission.result_encrypted == sealed)
        .values(result_encrypted=CONSUMED))
    db.session.commit()
    if wiped.rowcount != 1:
        return None
    try:
        return json.loads(encryption.decrypt(sealed, _aad(digest)))
    except (encryption.DecryptionError, encryption.EncryptionKeyError, ValueError):
        return None
