"""AES-256-GCM for the few secrets that must be recoverable (the CI deploy token).

A stored value reads `v1:<key id>:<base64url(nonce + ciphertext + tag)>`. The key id
(the first 8 hex digits of the key's SHA-256) tells which key sealed a value, so that a
value under a key this process does not hold fails with a clear message instead of a
bare authentication error. The caller's associated data binds a value to its row.
"""
import base64
import binascii
import hashlib
import secrets
from pathlib import Path
from typing import Callable, Optional

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

from ..extensions import db

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12


class EncryptionKeyError(Exception):
    """The configured key is missing or malformed."""


class DecryptionError(Exception):
    """A stored value cannot be opened with the key at hand."""


def new_key() -> str:
    """A fresh key in the form GATEHOUSE_ENCRYPTION_KEY takes: base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def parse_key(text: str, source: str = "GATEHOUSE_ENCRYPTION_KEY") -> bytes:
    """Decode a base64 key, refusing anything but exactly 32 bytes."""
    try:
        key = base64.b64decode((text or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise EncryptionKeyError(
            f"{source} must be {KEY_BYTES} random bytes in base64 (44 characters), e.g. "
            "the output of: python3 -c 'import base64,os; "
            "print(base64.b64encode(os.urandom(32)).decode())'")
    return key


def key_source() -> str:
    """'config' when GATEHOUSE_ENCRYPTION_KEY is set, else the path of the instance key file."""
    if current_app.config.get("ENCRYPTION_KEY"):
        return "config"
    return current_app.config["ENCRYPTION_KEY_FILE"]


def current_key() -> bytes:
    """The key from GATEHOUSE_ENCRYPTION_KEY, else instance/encryption_key (made on first use)."""
    from ..config import _instance_secret
    configured = current_app.config.get("ENCRYPTION_KEY")
    if configured:
        return parse_key(configured)
    path = Path(current_app.config["ENCRYPTION_KEY_FILE"])
    # Read on every use, not cached: after a rotation rewrites the file, every worker
    # picks up the new key without a restart.
    return parse_key(_instance_secret(path, make=new_key), source=str(path))


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def encrypt(plaintext: str, aad: bytes, key: Optional[bytes] = None) -> str:
    """Seal `plaintext` with a fresh random nonce, bound to `aad`."""
    key = key or current_key()
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), aad)
    body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
    return f"{VERSION}:{key_id(key)}:{body}"


def decrypt(stored: str, aad: bytes, key: Optional[bytes] = None) -> str:
    """Open a value sealed by `encrypt` with the same associated data."""
    key = key or current_key()
    try:
        version, kid, body = stored.split(":", 2)
        raw = base64.urlsafe_b64decode(body.encode("ascii"))
    except (ValueError, binascii.Error):
        raise DecryptionError("stored value is not in the v1 format")
    if version != VERSION or len(raw) < NONCE_BYTES + 16:
        raise DecryptionError("stored value is not in the v1 format")
    if kid != key_id(key):
        raise DecryptionError(
            f"value was sealed with key {kid}, but the key in use is {key_id(key)} "
            "(was the encryption key rotated or changed without updating this server?)")
    try:
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad).decode("utf-8")
    except InvalidTag:
        raise DecryptionError("value does not authenticate: it was altered or belongs to "
                              "another row")


# Every encrypted column: (model, attribute, associated data for a row).
def _columns() -> list[tuple[type, str, Callable[[object], bytes]]]:
    from ..models import DeployToken, Webhook
    from .deploy_tokens import secret_aad
    from .webhooks import token_aad
    return [(DeployToken, "token_encrypted", lambda row: secret_aad(row.id)),
            (Webhook, "token_encrypted", lambda row: token_aad(row.id))]


def rotate(old_key: bytes, new_key: bytes) -> int:
    """Re-encrypt every stored ciphertext from `old_key` to `new_key` in one transaction.

    Values already under `new_key` are left alone, so a repeated run is harmless. Any
    value that opens with neither key aborts the whole rotation and changes nothing.
    """
    changed = 0
    try:
        for model, attribute, aad_of in _columns():
            column = getattr(model, attribute)
            if db.session.get_bind().dialect.name == "postgresql":
                # No row may be added or changed under the old key while we rotate.
                db.session.execute(sa.text(
                    f'LOCK TABLE "{model.__tablename__}" IN SHARE ROW EXCLUSIVE MODE'))
            rows = db.session.scalars(
                sa.select(model).where(column.is_not(None)).order_by(model.id).with_for_update())
            for row in rows:
                stored, aad = getattr(row, attribute), aad_of(row)
                try:
                    if stored.split(":", 2)[1:2] == [key_id(new_key)]:
                        decrypt(stored, aad, new_key)  # prove it, but leave it
                        continue
                    plaintext = decrypt(stored, aad, old_key)
                except DecryptionError as error:
                    raise DecryptionError(f"{model.__tablename__} id {row.id}: {error}") from None
                setattr(row, attribute, encrypt(plaintext, aad, new_key))
                changed += 1
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return changed
