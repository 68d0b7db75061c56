"""Git smart HTTP: `/<project>.git/info/refs`, `/git-upload-pack`, `/git-receive-pack`.

As on GitLab, the `.git` suffix is optional: `/<project>/info/refs` serves the same
repository (git itself adds the `/` before `info/refs`, so a trailing slash works too).

Every request authenticates itself with HTTP basic auth (a deploy token with its own
username, or a user's password), is checked by the one access policy, and is then
served by the real `git http-backend`, run as a CGI child that streams both ways.

git sends no credentials on its first request, even with `user:token@` in the URL; it
retries with them only after a `401` carrying `WWW-Authenticate: Basic`. So anything
that needs credentials answers 401 to anonymous callers, never 403 or 404. A
text/plain body of a 401/403/404 is shown by git as `remote: …`.
"""
import fcntl
import logging
import subprocess
import threading
from typing import Iterator, Optional

from flask import Blueprint, Response, request

from ..extensions import db
from ..services import accounts, repositories
from ..services.credentials import DEPLOY_TOKEN, Door
from ..services.errors import DomainError, NotFound, Unauthenticated
from ..services.policy import Action, Principal, authorize
from .auth import authenticate, challenge

bp = Blueprint("git_http", __name__)
# git sends basic auth only: a deploy token with its own username, or a user's password.
DOOR = Door("git", passwords=True, basic_tokens=frozenset({DEPLOY_TOKEN}))
log = logging.getLogger(__name__)

UPLOAD_PACK = "git-upload-pack"
RECEIVE_PACK = "git-receive-pack"
SERVICES = {UPLOAD_PACK: Action.READ_REPOSITORY, RECEIVE_PACK: Action.PUSH_REPOSITORY}
NOT_FOUND = ("The project you were looking for could not be found or you don't have "
             "permission to view it.")
CHUNK = 1 << 20
# Request headers never handed to git: credentials stay in this process.
PRIVATE_HEADERS = {"AUTHORIZATION", "PROXY_AUTHORIZATION", "COOKIE"}
# Partial clone (`--filter=blob:none`, `blob:limit=`, `tree:0`): git advertises `filter`
# only with allowFilter, and the later lazy fetch of missing blobs asks for them by id,
# which upload-pack refuses unless any object may be wanted. Access to the repository
# was decided before git runs, so naming an object grants nothing more.
UPLOAD_PACK_SETTINGS = {"uploadpack.allowFilter": "true",
                        "uploadpack.allowAnySHA1InWant": "true"}


# One route per endpoint; `repo` is the project's full path with or without `.git`
# (project paths never end in `.git`, so stripping it is unambiguous).
@bp.route("/<path:repo>/info/refs", methods=["GET"])
def info_refs(repo: str):
    service = request.args.get("service", "")
    if not service and not repo.endswith(".git"):
        # git always names the service; without `.git` and a service this is the page of
        # a project that happens to be called `refs` in a group `…/info`.
        from ..web.pages import project
        return project(f"{repo}/info/refs")
    if service not in SERVICES:
        # The dumb protocol would serve files without the smart protocol's checks.
        return _text("Only the smart HTTP protocol is supported: use git 1.6.6 or later.", 403)
    return _serve(project_path(repo), service, "info/refs")


@bp.route(f"/<path:repo>/{UPLOAD_PACK}", methods=["POST"])
def upload_pack(repo: str):
    return _serve(project_path(repo), UPLOAD_PACK, UPLOAD_PACK)


@bp.route(f"/<path:repo>/{RECEIVE_PACK}", methods=["POST"])
def receive_pack(repo: str):
    return _serve(project_path(repo), RECEIVE_PACK, RECEIVE_PACK)


def project_path(repo: str) -> str:
    """The project's full path from a repository URL path (`.git` and slashes optional)."""
    repo = repo.strip("/")
    return repo[:-4] if repo.endswith(".git") else repo


def _serve(full_path: str, service: str, rest: str) -> Response:
    principal = authenticate(DOOR)
    action = SERVICES[service]
    project = authorize(principal, action, accounts.find_project(full_path))
    repository = repositories.ensure(project.full_path)
    env = _cgi_environment(f"/{repository.relative_to(repositories.root())}/{rest}",
                           principal, request.remote_addr or "", push=service == RECEIVE_PACK)
    # Nothing below needs the database: give the connection back before streaming.
    db.session.remove()
    has_body = request.method == "POST"
    return _run_backend(env, request.stream if has_body else None)


@bp.errorhandler(DomainError)
def _refused(error: DomainError) -> Response:
    """git shows a text/plain body as `remote: ...`; only a 401 makes it send credentials."""
    if isinstance(error, Unauthenticated):
        return challenge()
    if isinstance(error, NotFound):
        return _text(NOT_FOUND, 404)
    return _text(_sentence(str(error)), error.status)


def _sentence(reason: str) -> str:
    return reason[:1].upper() + reason[1:].rstrip(".") + "."


def _text(message: str, status: int) -> Response:
    return Response(message + "\n", status, {"Content-Type": "text/plain; charset=utf-8"})


def _cgi_environment(path_info: str, principal: Principal, ip: str, *, push: bool) -> dict:
    env = repositories.git_environment()
    env.update({
        "GIT_PROJECT_ROOT": str(repositories.root()),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
        "REQUEST_METHOD": request.method,
        "PATH_INFO": path_info,
        "QUERY_STRING": request.query_string.decode("latin-1"),
        "REMOTE_ADDR": ip,
        "REMOTE_USER": principal.name or "",
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
    })
    if request.content_length is not None:
        env["CONTENT_LENGTH"] = str(request.content_length)
    # Without GIT_PROTOCOL git silently falls back to protocol v0.
    if "Git-Protocol" in request.headers:
        env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
    for key, value in request.environ.items():
        if key.startswith("HTTP_") and key[5:] not in PRIVATE_HEADERS:
            env[key] = value  # Content-Encoding among them: git gzips large requests
    settings = dict(UPLOAD_PACK_SETTINGS)
    if push:
        # Access was decided above; receive-pack is off by default for anonymous CGI.
        settings["http.receivepack"] = "true"
    env.update(repositories.config_environment(settings))
    return env


def _run_backend(env: dict, body) -> Response:
    """Run `git http-backend`, feeding it the request body and streaming its answer."""
    proc = subprocess.Popen(["git", "http-backend"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    _widen_pipe(proc.stdout)
    threads = [threading.Thread(target=_drain_stderr, args=(proc.stderr,), daemon=True)]
    if body is not None:
        threads.append(threading.Thread(target=_feed, args=(body, proc.stdin), daemon=True))
    else:
        proc.stdin.close()
    for thread in threads:
        thread.start()

    try:
        status, headers, rest = _read_cgi_headers(proc.stdout)
    except Exception:
        _finish(proc, threads)
        raise
    if status is None:
        _finish(proc, threads)
        log.error("git http-backend sent no CGI headers (exit %s)", proc.returncode)
        return _text("The git backend failed.", 500)

    def stream() -> Iterator[bytes]:
        try:
            if rest:
                yield rest
            while True:
                chunk = proc.stdout.read(CHUNK)
                if not chunk:
                    break
                yield chunk
        finally:
            _finish(proc, threads)

    response = Response(stream(), status, headers, direct_passthrough=True)
    return response


def _widen_pipe(pipe) -> None:
    # A 1 MiB pipe means fewer, larger reads and writes on a big clone.
    try:
        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)
    except OSError:
        pass


def _feed(body, stdin) -> None:
    try:
        while True:
            chunk = body.read(CHUNK)
            if not chunk:
                break
            stdin.write(chunk)
    except (BrokenPipeError, OSError) as error:
        log.info("git http-backend stopped reading the request body: %s", error)
    except Exception:
        log.exception("reading the request body for git http-backend failed")
    finally:
        try:
            stdin.close()
        except OSError:
            pass


def _drain_stderr(stderr) -> None:
    for line in iter(stderr.readline, b""):
        log.warning("git http-backend: %s", line.decode("utf-8", "replace").rstrip())
    stderr.close()


def _read_cgi_headers(stdout) -> tuple[Optional[int], list[tuple[str, str]], bytes]:
    """Read the CGI header block; return (status, headers, body bytes already read)."""
    buffer = b""
    while True:
        for separator in (b"\r\n\r\n", b"\n\n"):
            head, found, rest = buffer.partition(separator)
            if found:
                return (*_parse_cgi_headers(head), rest)
        if len(buffer) > 65536:
            return None, [], b""
        chunk = stdout.read(65536)
        if not chunk:
            return None, [], b""
        buffer += chunk


def _parse_cgi_headers(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    status = 200
    headers = []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not name:
            continue
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name, value))
    return status, headers


def _finish(proc: subprocess.Popen, threads: list[threading.Thread]) -> None:
    """Reap the child; if the client went away mid-stream, stop it."""
    try:
        proc.stdout.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for thread in threads:
        thread.join(timeout=5)
