"""Upload bodies our nginx wrote to disk before the app saw them (GitLab Workhorse's way).

For a raw-file upload (generic and Maven PUT, Git LFS objects) our nginx asks the app
twice; services/nginx.py writes that config:

1. Authorize-only: the original method and URI, with no body. The view runs as usual
   until it would read the body, where it stops with 204 ("go ahead"). A refusal is
   rendered by the blueprint's own error handler as always; `_refusal_for_nginx` then
   moves that answer into headers of a 401/403 (the only refusals `auth_request` passes
   on), and nginx sends it back as the app wrote it. Nothing of the body was read yet.
2. Once nginx holds the whole body in a file in the spool folder: the same request with
   that file's path instead of the body. `upload()` adopts it (hash, fsync, rename).

Both carry the front secret, an HMAC of SECRET_KEY that only our nginx config holds;
headers without it are refused, so a client talking straight to gunicorn can never make
the app adopt a file of its choosing. A request with none of these headers (no nginx,
tests, development) streams its body from the socket as before.
"""
import hmac
import json
import os
import re
from pathlib import Path
from typing import Iterable, Optional

from flask import Response, abort, current_app, g, request

from ..services import nginx, package_storage
from ..services.errors import Forbidden

# nginx names its temp files with digits only (ngx_create_temp_file, no levels).
SPOOL_NAME = re.compile(r"^[0-9]{1,20}$")
# Refusal bodies are short; the whole answer must fit nginx's proxy_buffer_size (4k).
MAX_REFUSAL_BODY = 2048


def _from_front() -> bool:
    sent = request.headers.get(nginx.FRONT_HEADER)
    return sent is not None and hmac.compare_digest(sent.encode(), nginx.front_secret().encode())


def _front_headers() -> bool:
    return any(name in request.headers for name in
               (nginx.FRONT_HEADER, nginx.AUTHORIZE_ONLY_HEADER, nginx.SPOOL_FILE_HEADER))


def _checked() -> None:
    """Refuse front headers that did not come from our nginx."""
    if _front_headers() and not _from_front():
        current_app.logger.warning("spool headers without the front secret from %s",
                                   request.remote_addr)
        raise Forbidden("upload spool headers are only accepted from the Gatehouse front")


def authorize_only() -> bool:
    """Whether this is nginx asking if the upload may start (no body comes with it)."""
    if "authorize_only" not in g:
        g.authorize_only = (request.headers.get(nginx.AUTHORIZE_ONLY_HEADER) == "1"
                            and _from_front())
    return g.authorize_only


def _go_ahead_or_spooled() -> Optional[Path]:
    """Stop an authorize-only request here (the view allowed it); else the spooled file."""
    _checked()
    if authorize_only():
        abort(Response(status=204))
    raw = request.headers.get(nginx.SPOOL_FILE_HEADER)
    if not raw:
        return None
    path = Path(raw)
    folder = package_storage.spool_root().resolve()
    if path.parent != folder or not SPOOL_NAME.match(path.name) or not path.is_file() \
            or path.is_symlink():
        current_app.logger.error("spooled body outside the spool folder refused: %r", raw)
        raise Forbidden("the spooled body is not in the spool folder")
    return path


def _length() -> Optional[int]:
    announced = request.headers.get(nginx.SPOOL_LENGTH_HEADER)
    return int(announced) if announced and announced.isdigit() else None


def upload(algorithms: Iterable[str] = (), limit: Optional[int] = None
           ) -> package_storage.Upload:
    """The request body as a finished Upload: adopted from nginx's spool, or streamed."""
    spooled = _go_ahead_or_spooled()
    if spooled is not None:
        current_app.logger.info("adopting spooled upload %s", spooled.name)
        return package_storage.adopt(spooled, length=_length(), algorithms=algorithms,
                                     limit=limit)
    return package_storage.receive(request.stream, length=request.content_length,
                                   algorithms=algorithms, limit=limit)


def length() -> Optional[int]:
    """The body's announced length, spooled or not."""
    _checked()
    if request.headers.get(nginx.SPOOL_FILE_HEADER) and _from_front():
        return _length()
    return request.content_length


def read(limit: int) -> bytes:
    """At most `limit` bytes of a (small) body: a checksum, Maven's own metadata."""
    spooled = _go_ahead_or_spooled()
    if spooled is None:
        return package_storage.read_body(request.stream, limit)
    with open(spooled, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as file:
        return file.read(limit)


def _one_line(body: bytes, mimetype: str) -> str:
    text = body.decode("utf-8", "replace")
    if "\n" not in text and text.isascii() and text.isprintable():
        return text
    if mimetype.endswith("json"):
        try:
            return json.dumps(json.loads(text), ensure_ascii=True, separators=(",", ":"))
        except ValueError:
            pass
    return re.sub(r"[^\x20-\x7e]", " ", text)


def _refusal_for_nginx(response: Response) -> Response:
    """In authorize-only mode, carry a refusal to nginx as auth_request needs it."""
    if 200 <= response.status_code < 300 or not authorize_only():
        return response
    body = response.get_data()
    newline = body.endswith(b"\n")
    line = _one_line(body[:-1] if newline else body, response.mimetype or "")[:MAX_REFUSAL_BODY]
    carried = Response(status=401 if response.status_code == 401 else 403)
    prefix = nginx.REFUSAL_PREFIX
    carried.headers[prefix + "Status"] = str(response.status_code)
    carried.headers[prefix + "Body"] = line
    carried.headers[prefix + "Newline"] = "1" if newline else "0"
    for name in nginx.REFUSAL_HEADERS:
        if name in response.headers:
            carried.headers[prefix + name] = response.headers[name]
    return carried


def register(app) -> None:
    app.after_request(_refusal_for_nginx)
