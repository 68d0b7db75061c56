"""Container registry token service: scopes, grants, signed JWTs and the registry's config.

Gatehouse is the token authority of a real CNCF distribution registry, as GitLab is of
its registry: the registry sends clients to `/jwt/auth`, we check their credentials and
sign a short-lived JWT listing what each requested repository allows; the registry
trusts our certificate and enforces that list.
"""
import base64
import functools
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from flask import current_app

from ..models import Project
from . import accounts
from .policy import Action, Principal, can

# Registry actions we know and the policy action each needs. Anything else (`delete`,
# `*`, typos) is never granted: GitLab keeps those for admins, we for nobody.
ACTIONS = {"pull": Action.READ_REGISTRY, "push": Action.WRITE_REGISTRY}
MAX_NAME_LENGTH = 255  # the registry's own limit on repository names
KEY_FILE, CERT_FILE = "registry.key", "registry.crt"


@dataclass(frozen=True)
class Scope:
    """One `scope=repository:<name>:<actions>` request parameter, parsed."""

    name: str
    actions: tuple[str, ...]


def parse_scope(raw: str) -> Optional[Scope]:
    """Parse a repository scope; None when it is malformed or of another type.

    The name may itself contain `:` only in the registry's `host:port/` form, which
    clients never send here, so the actions are what follows the last colon.
    """
    kind, sep, rest = (raw or "").partition(":")
    name, sep2, actions = rest.rpartition(":")
    if kind != "repository" or not sep or not sep2 or not name or name != name.strip():
        return None
    if len(name) > MAX_NAME_LENGTH:
        return None
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return None
    wanted = tuple(dict.fromkeys(a.strip() for a in actions.split(",") if a.strip()))
    return Scope(name, wanted) if wanted else None


def project_for(repository: str) -> Optional[Project]:
    """The project a repository name belongs to: the one prefix of it that is a project.

    Registry names are lower case, project paths need not be, so the match ignores case.
    """
    parts = repository.lower().split("/")
    prefixes = {"/".join(parts[:i]) for i in range(len(parts), 1, -1)}
    return accounts.find_project_among(prefixes) if prefixes else None


def granted(principal: Principal, scope: Scope) -> list[str]:
    """The subset of the scope's actions the policy allows on its repository."""
    if scope.name != scope.name.lower():
        return []  # the registry refuses upper-case names; never sign one
    project = project_for(scope.name)
    if project is None:
        return []
    return [a for a in scope.actions
            if a in ACTIONS and can(principal, ACTIONS[a], project).allowed]


CATALOG_SCOPE = "registry:catalog:*"


def access_for(principal: Principal, raw_scopes: list[str]) -> list[dict]:
    """The `access` claim: per requested scope, what the policy allows (empty ones left out).

    `registry:catalog:*` (docker search, listing every repository) is for admins only,
    as on GitLab; malformed scopes and other types get nothing.
    """
    access = []
    for raw in raw_scopes:
        if raw == CATALOG_SCOPE:
            if principal.is_admin:
                access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
            continue
        scope = parse_scope(raw)
        if scope is None:
            continue
        actions = granted(principal, scope)
        if actions:
            access.append({"type": "repository", "name": scope.name, "actions": actions})
    return access


def issue(principal: Principal, access: list[dict], *,
          now: Optional[datetime] = None) -> dict:
    """Sign a token for `access`; return the body `/jwt/auth` answers with."""
    config = current_app.config
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    lifetime = int(config["REGISTRY_TOKEN_LIFETIME"])
    key = signing_key()
    claims = {
        "iss": str(config["REGISTRY_ISSUER"]),
        "sub": "" if principal.is_anonymous else principal.name,
        # distribution 2.8 refuses an `aud` given as a list: one string, the service.
        "aud": str(config["REGISTRY_SERVICE"]),
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=lifetime)).timestamp()),
        "jti": secrets.token_hex(16),
        "access": access,
    }
    token = jwt.encode(claims, key.private_key, algorithm=key.algorithm,
                       headers={"kid": key.kid, "typ": "JWT"})
    return {"token": token, "access_token": token, "expires_in": lifetime,
            "issued_at": now.isoformat().replace("+00:00", "Z")}


# --- the signing key -------------------------------------------------------------------

@dataclass(frozen=True)
class SigningKey:
    private_key: "ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey"
    kid: str
    key_path: Path
    cert_path: Path

    @property
    def algorithm(self) -> str:
        # New keys are P-256 (ES256: a signature costs a fraction of RSA-3072's); keys
        # made before, or configured, may be RSA and keep signing RS256.
        return "ES256" if isinstance(self.private_key, ec.EllipticCurvePrivateKey) else "RS256"


def libtrust_kid(public_key) -> str:
    """The key id distribution matches against its cert bundle (docker/libtrust form).

    Base32 of the first 240 bits of SHA-256 over the DER SubjectPublicKeyInfo, in 12
    groups of 4 characters joined by colons. A hex id is refused as "untrusted key".
    """
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii")
    return ":".join(encoded[i:i + 4] for i in range(0, 48, 4))


def key_paths() -> tuple[Path, Path]:
    """Where the signing key and its certificate live (configured, or under DATA_DIR)."""
    config = current_app.config
    return _key_paths(config.get("REGISTRY_KEY"), config.get("REGISTRY_CERT"),
                      config["DATA_DIR"])


@functools.lru_cache(maxsize=16)
def _key_paths(key: Optional[str], cert: Optional[str], data_dir: str) -> tuple[Path, Path]:
    # Cached: every token signed asks, and building the paths cost more than the stat.
    if bool(key) != bool(cert):
        raise RuntimeError("set both GATEHOUSE_REGISTRY_KEY and GATEHOUSE_REGISTRY_CERT, or neither")
    if key:
        return Path(key), Path(cert)
    folder = Path(data_dir) / "keys" / "registry"
    return folder / KEY_FILE, folder / CERT_FILE


_cache: dict[tuple, SigningKey] = {}
_cache_lock = threading.Lock()


def signing_key() -> SigningKey:
    """Load the signing key, creating key and certificate on first use."""
    key_path, cert_path = key_paths()
    try:
        stamp = (str(key_path), key_path.stat().st_mtime_ns)  # one stat per token signed
    except FileNotFoundError:
        if current_app.config.get("REGISTRY_KEY"):
            raise RuntimeError(f"registry signing key {key_path} does not exist "
                               "(GATEHOUSE_REGISTRY_KEY)") from None
        _create(key_path, cert_path)
        stamp = (str(key_path), key_path.stat().st_mtime_ns)
    with _cache_lock:
        cached = _cache.get(stamp)
        if cached is None:
            private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cached = SigningKey(private, libtrust_kid(private.public_key()), key_path, cert_path)
            _cache.clear()
            _cache[stamp] = cached
    return cached


def _create(key_path: Path, cert_path: Path) -> None:
    """Write a new key and self-signed certificate, safe when several workers race.

    Both files are written into a private temporary folder which is then renamed to the
    final one: rename is atomic, and fails when another worker's folder got there first,
    so everyone ends up using the same complete pair.
    """
    folder = key_path.parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".registry-", dir=folder.parent))
    try:
        private = ec.generate_private_key(ec.SECP256R1())
        _write(staging / key_path.name, private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        _write(staging / cert_path.name, _certificate(private).public_bytes(
            serialization.Encoding.PEM))
        staging.chmod(0o755)  # the registry process reads the certificate
        try:
            os.rename(staging, folder)
        except OSError:
            if not key_path.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if path.suffix == ".key" else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _certificate(private) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Gatehouse registry token signer")])
    now = datetime.now(timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(private, hashes.SHA256()))


# --- the registry's configuration ------------------------------------------------------

def registry_config(listen: str) -> str:
    """A `config.yml` for `docker-registry serve` that trusts Gatehouse's tokens."""
    config = current_app.config
    _, cert_path = key_paths()
    signing_key()  # the certificate must exist before the registry reads it
    q = json.dumps  # a JSON string is a valid YAML scalar, whatever it contains
    return f"""\
# Generated by `flask --app wsgi registry config`: the registry asks Gatehouse for tokens.
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {q(str(Path(config["DATA_DIR"]).resolve() / "registry"))}
  delete:
    enabled: true
http:
  addr: {q(listen)}
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  token:
    realm: {q(config["EXTERNAL_URL"] + "/jwt/auth")}
    service: {q(config["REGISTRY_SERVICE"])}
    issuer: {q(config["REGISTRY_ISSUER"])}
    rootcertbundle: {q(str(cert_path.resolve()))}
"""
