"""Package files on disk: streamed to a temp file, hashed, fsynced, then content-addressed.

Layout under DATA_DIR/packages: `tmp/` holds uploads in flight, `sha256/ab/cd/<hex>`
holds finished files. A file reaches its content address before any row points at it,
so a crash can leave an unreferenced file (removed by `packages gc`), never a row
without its file. Git LFS objects live in the same store (an LFS oid is the SHA-256 of
the content), so one copy serves every package and project that holds the same bytes.

Behind our nginx, raw-file uploads arrive already on disk: nginx writes the body to
`spool/` (same filesystem) and the app adopts that file (hash, fsync, rename) instead of
reading a socket. nginx creates those files, so they carry no lock of ours: `packages gc`
removes a spool file once it is older than any request could still be using it
(services/nginx.py `spool_max_age`).

Each temp file is locked (flock) by the request writing it until it is stored or
discarded. The kernel drops the lock when the writer dies, however it dies, so
`packages gc` removes a temp file as soon as it can take its lock: no age to wait for.
"""
import errno
import fcntl
import hashlib
import os
import queue
import socket
import stat
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Optional

import sqlalchemy as sa
from flask import current_app
from werkzeug.exceptions import ClientDisconnected

from ..extensions import db
from ..models import LfsObject, PackageFile
from .errors import InsufficientStorage

CHUNK = 1024 * 1024
# A content file younger than this may belong to an upload whose row is being
# committed right now: gc leaves it alone.
CONTENT_GRACE = 3600


class TooLarge(Exception):
    """The upload exceeds MAX_PACKAGE_SIZE (HTTP 413)."""


class Incomplete(Exception):
    """The client stopped sending before the announced length (it disconnected)."""


def root() -> Path:
    return Path(current_app.config["DATA_DIR"]) / "packages"


def content_root() -> Path:
    """The content-addressed store: sha256/ab/cd/<hex>."""
    return root() / "sha256"


def spool_root() -> Path:
    """Where our nginx writes the bodies it spools (client_body_temp_path): beside the
    store, on the same filesystem, so adopting one is a rename."""
    return root() / "spool"


def content_path(sha256: str) -> Path:
    """Where the file with this SHA-256 lives."""
    return content_root() / sha256[:2] / sha256[2:4] / sha256


def max_size() -> int:
    return int(current_app.config["MAX_PACKAGE_SIZE"])


class _Beside:
    """Apply `consume` to each chunk on a thread of its own, at most a few chunks behind.

    hashlib and file writes release the GIL on large buffers, so hashing, writing and
    reading the socket proceed on different cores; the short queue bounds memory.
    """

    def __init__(self, consume):
        self.consume, self.error = consume, None
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.thread: Optional[threading.Thread] = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (data := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.consume(data)
                except BaseException as exc:  # surfaced in put() or close()
                    self.error = exc

    def put(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(data)

    def close(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None
        if self.error is not None:
            raise self.error


@dataclass
class Upload:
    """A file being received: written to a temp file and hashed on the way."""

    path: Path
    algorithms: tuple[str, ...]
    limit: int
    size: int = 0
    digests: dict[str, str] = field(default_factory=dict)
    _file: Optional[BinaryIO] = None
    _hashes: dict = field(default_factory=dict)
    # One thread per digest: hashlib releases the GIL, so several digests of one
    # upload (Maven wants MD5 and SHA-1 beside SHA-256) run on several cores.
    _hashers: list = field(default_factory=list)
    _writer: Optional[_Beside] = None
    # True once this upload put a new file at the content address (not a shared one).
    created: bool = False

    @classmethod
    def start(cls, algorithms: Iterable[str] = (), limit: Optional[int] = None) -> "Upload":
        """Open a fresh temp file under packages/tmp."""
        tmp = root() / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        algos = tuple(dict.fromkeys(("sha256", *algorithms)))
        path, file = _locked_temp_file(tmp)
        upload = cls(path=path, algorithms=algos, limit=max_size() if limit is None else limit)
        upload._file = file
        upload._hashes = {a: hashlib.new(a) for a in algos}
        upload._hashers = [_Beside(h.update) for h in upload._hashes.values()]
        upload._writer = _Beside(upload._file.write)
        return upload

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge(f"File is too large (maximum is {self.limit} bytes)")
        for hasher in self._hashers:
            hasher.put(data)
        self._writer.put(data)

    def finish(self) -> None:
        """Flush and fsync the temp file and compute its digests (it stays locked)."""
        self._writer.close()
        for hasher in self._hashers:
            hasher.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self.digests = {a: h.hexdigest() for a, h in self._hashes.items()}

    @property
    def sha256(self) -> str:
        return self.digests["sha256"]

    def store(self) -> Path:
        """Move the finished file to its content address (shared if it is already there)."""
        target = content_path(self.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            # Same bytes already stored: refresh its age so gc cannot race this upload.
            os.utime(target)
            self.path.unlink(missing_ok=True)
        else:
            os.replace(self.path, target)
            _fsync_dir(target.parent)
            self.created = True
        self._file.close()  # releases the lock: the temp name is gone
        return target

    def discard(self) -> None:
        """Remove the temp file (an upload that failed or was refused)."""
        for worker in (self._writer, *self._hashers):
            if worker is not None:
                try:
                    worker.close()
                except Exception:
                    pass  # the upload is being thrown away; its write error no longer matters
        if self._file is not None and not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)

    def unstore(self) -> None:
        """Undo store() after the row could not be committed, unless a row uses the file."""
        if self.created and not referenced(self.sha256):
            content_path(self.sha256).unlink(missing_ok=True)


def _locked_temp_file(folder: Path) -> tuple[Path, BinaryIO]:
    """Create and lock a temp file; its name says which host and process write it."""
    while True:
        path = folder / f"upload-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(8)}"
        file = open(path, "xb")
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        if os.fstat(file.fileno()).st_nlink:
            return path, file
        # gc took the lock between our create and our lock, and removed the name.
        file.close()


def read_body(stream: BinaryIO, size: int) -> bytes:
    """Read from a request body; a connection that breaks mid-body is Incomplete."""
    try:
        return stream.read(size)
    # gunicorn's NoMoreData on a cut chunked body, resets; werkzeug's ClientDisconnected
    # when the body ends before its Content-Length.
    except (OSError, ClientDisconnected) as exc:
        raise Incomplete(f"the client stopped sending ({exc.__class__.__name__})") from exc


@contextmanager
def disk_space_checked():
    """Turn a full disk (or quota) into InsufficientStorage: HTTP 507, nothing kept."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(
                "The server is out of storage space, so nothing was kept: try again later "
                "and tell an administrator if it persists.") from exc
        raise


def receive(stream: BinaryIO, *, length: Optional[int], algorithms: Iterable[str] = (),
            limit: Optional[int] = None) -> Upload:
    """Stream a request body into a finished Upload; discard it on any failure."""
    with disk_space_checked():
        return _receive(stream, length=length, algorithms=algorithms, limit=limit)


def _receive(stream: BinaryIO, *, length: Optional[int], algorithms: Iterable[str] = (),
             limit: Optional[int] = None) -> Upload:
    upload = Upload.start(algorithms, limit)
    try:
        if length is not None and length > upload.limit:
            raise TooLarge(f"File is too large (maximum is {upload.limit} bytes)")
        while True:
            chunk = read_body(stream, CHUNK)
            if not chunk:
                break
            upload.write(chunk)
        if length is not None and upload.size != length:
            raise Incomplete(f"received {upload.size} of {length} bytes")
        upload.finish()
    except BaseException:
        upload.discard()
        raise
    return upload


def adopt(path: Path, *, length: Optional[int], algorithms: Iterable[str] = (),
          limit: Optional[int] = None) -> Upload:
    """Take a body nginx spooled to `path` as a finished Upload; remove it on any failure.

    The file must be a regular file (opened without following a link); its size is
    checked against the limit and the announced length, then it is hashed and fsynced.
    store() renames it into its content address.
    """
    with disk_space_checked():
        return _adopt(path, length=length, algorithms=algorithms, limit=limit)


def _adopt(path: Path, *, length: Optional[int], algorithms: Iterable[str] = (),
           limit: Optional[int] = None) -> Upload:
    algos = tuple(dict.fromkeys(("sha256", *algorithms)))
    file = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")
    upload = Upload(path=path, algorithms=algos, limit=max_size() if limit is None else limit)
    upload._file = file
    synced = None
    try:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise Incomplete("the spooled body is not a regular file")
        if info.st_size > upload.limit:
            raise TooLarge(f"File is too large (maximum is {upload.limit} bytes)")
        if length is not None and info.st_size != length:
            raise Incomplete(f"received {info.st_size} of {length} bytes")
        # The body nginx just wrote is still dirty in the page cache: write it back on a
        # thread of its own (I/O) while this one hashes it (CPU).
        synced = _Beside(os.fsync)
        synced.put(file.fileno())
        upload._hashes = {a: hashlib.new(a) for a in algos}
        if len(algos) == 1:
            # One digest: read and hash on this thread (both release the GIL).
            upload._hashes["sha256"] = hashlib.file_digest(file, "sha256")
        else:
            hashers = [_Beside(h.update) for h in upload._hashes.values()]
            try:
                while chunk := file.read(CHUNK):
                    for hasher in hashers:
                        hasher.put(chunk)
            finally:
                for hasher in hashers:
                    hasher.close()
        upload.size = info.st_size
        synced.close()
        if upload.size != os.fstat(file.fileno()).st_size:
            raise Incomplete("the spooled body changed while it was read")
        upload.digests = {a: h.hexdigest() for a, h in upload._hashes.items()}
    except BaseException:
        if synced is not None:
            try:
                synced.close()
            except Exception:
                pass  # the upload is being thrown away
        upload.discard()
        raise
    return upload


def receive_bytes(data: bytes, algorithms: Iterable[str] = ()) -> Upload:
    """Store bytes already in memory (an npm tarball decoded from its JSON)."""
    with disk_space_checked():
        upload = Upload.start(algorithms)
        try:
            upload.write(data)
            upload.finish()
        except BaseException:
            upload.discard()
            raise
        return upload


def file_digest(sha256: str, algorithm: str) -> str:
    """A digest of a stored file not computed at upload (Maven's rare .sha512), from disk."""
    digest = hashlib.new(algorithm)
    with open(content_path(sha256), "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def referenced(sha256: str) -> bool:
    """Whether a package file or an LFS object points at this content."""
    return any(db.session.scalar(sa.select(column).where(match).limit(1)) is not None
               for column, match in ((PackageFile.id, PackageFile.file_sha256 == sha256),
                                     (LfsObject.id, LfsObject.oid == sha256)))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_if_abandoned(path: Path) -> int:
    """Remove a temp file no live request holds locked; return the bytes freed."""
    try:
        file = open(path, "rb")
    except (FileNotFoundError, IsADirectoryError):
        return -1
    with file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return -1  # its writer is alive
        size = os.fstat(file.fileno()).st_size
        path.unlink(missing_ok=True)
        return size


def gc(*, now: Optional[float] = None, grace: int = CONTENT_GRACE,
       spool_age: Optional[int] = None) -> dict[str, int]:
    """Remove temp files whose writer is gone, spool files too old to be in use, and
    content files no row points to."""
    from .nginx import spool_max_age
    now = now or time.time()
    spool_age = spool_max_age() if spool_age is None else spool_age
    removed = {"tmp": 0, "spool": 0, "content": 0, "bytes": 0}
    for path in spool_root().glob("*") if spool_root().is_dir() else []:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode) and now - info.st_mtime > spool_age:
            path.unlink(missing_ok=True)
            removed["spool"] += 1
            removed["bytes"] += info.st_size
    for path in (root() / "tmp").glob("*") if (root() / "tmp").is_dir() else []:
        freed = _remove_if_abandoned(path)
        if freed >= 0:
            removed["tmp"] += 1
            removed["bytes"] += freed
    base = content_root()
    if base.is_dir():
        for path in base.glob("*/*/*"):
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            if now - info.st_mtime <= grace or referenced(path.name):
                continue
            path.unlink(missing_ok=True)
            removed["content"] += 1
            removed["bytes"] += info.st_size
    return removed
