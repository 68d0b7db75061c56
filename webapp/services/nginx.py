"""The nginx in front of Gatehouse, as GitLab runs nginx + Workhorse in front of Rails.

`flask --app wsgi nginx config` prints a complete `nginx.conf` from the app's settings;
`make run`, the tests and the benchmarks start Debian's nginx with it. What it does:

- Browser and API requests are buffered whole before they reach a worker, so a client
  that sends its body one byte at a time costs an nginx connection, never a thread.
- git pushes and PyPI/npm uploads pass through unbuffered (they may be gigabytes),
  bounded by body and send timeouts; clones stream back unbuffered.
- Package downloads the app has authorized are served by nginx from disk
  (`X-Accel-Redirect` to an internal location), freeing the worker at once.
- Upstream connections are kept alive for less time than gunicorn keeps them, so nginx
  never reuses a connection gunicorn is closing (the race that drops keep-alive requests).
- `X-Forwarded-For` is set to the one address nginx saw: with
  `GATEHOUSE_TRUSTED_PROXIES=1` the app believes exactly this one hop.
- nginx's own errors under /api/v4 (upstream down, body too large) are JSON.
- Raw-file uploads (generic and Maven PUT, Git LFS objects) are spooled, as Workhorse
  does: nginx first asks the app whether the upload is allowed (`auth_request`, no body
  read, `Expect: 100-continue` unanswered), then writes the body to a file beside the
  store and hands the app its path; the app hashes, fsyncs and renames it
  (webapp/protocols/spool.py). A refusal keeps the app's own status, body and challenge.
"""
import hashlib
import hmac
from pathlib import Path

from flask import current_app

from . import package_storage

# Where the app sends X-Accel-Redirect for a stored package file (sha256/ab/cd/<hex>).
ACCEL_PACKAGES = "/-/accel/packages/"
# Room for multipart framing and form fields around a package file of the maximum size.
UPLOAD_OVERHEAD = 64 * 1024 * 1024

# Requests whose bodies stream straight through: git, and every package registry route.
GIT_LOCATION = r"^/.+/(info/refs|git-upload-pack|git-receive-pack)$"
PACKAGES_LOCATION = r"^/api/v4/(projects/.+/packages/|groups/.+/-/packages/|packages/)"
# Git LFS: the batch and lock calls are small JSON; the transfers stream objects.
LFS_LOCATION = r"^/.+/gitlab-lfs/objects/"

# Uploads whose body is the raw file, by the limits they share: on PUT, nginx spools the
# body to disk once the app has authorized the request (see spool_locations below).
SPOOLED = {
    "packages": r"^/api/v4/projects/.+/packages/(generic/[^/]+/[^/]+/[^/]+|maven/.+)$",
    "lfs": LFS_LOCATION,
}
SPOOL = "/-/spool/"
AUTHORIZE = "/-/spool-authorize"
# The headers between our nginx and the app (webapp/protocols/spool.py reads them).
FRONT_HEADER = "X-Gatehouse-Front"
AUTHORIZE_ONLY_HEADER = "X-Gatehouse-Authorize-Only"
SPOOL_FILE_HEADER = "X-Gatehouse-Spool-File"
SPOOL_LENGTH_HEADER = "X-Gatehouse-Spool-Length"
REFUSAL_PREFIX = "X-Gatehouse-Refusal-"
# A refusal's status, its body (one line, ASCII) and whether a newline ended it ...
REFUSAL_PARTS = ("Status", "Body", "Newline")
# ... and the headers of the app's answer that nginx sends back with it.
REFUSAL_HEADERS = ("Content-Type", "Cache-Control", "WWW-Authenticate", "LFS-Authenticate",
                   "Retry-After")
# The statuses a refused upload can carry back through auth_request (anything else is 500).
REFUSAL_STATUSES = (400, 401, 403, 404, 405, 409, 413, 422, 429, 500, 503, 507)

API_ERRORS = {400: "400 Bad request", 413: "413 Request Entity Too Large",
              500: "500 Internal Server Error", 502: "502 Bad Gateway",
              503: "503 Service Unavailable", 504: "504 Gateway Timeout"}


def accel_path(sha256: str) -> str:
    """The internal URI nginx serves a stored package file from."""
    return f"{ACCEL_PACKAGES}{sha256[:2]}/{sha256[2:4]}/{sha256}"


def in_front(request) -> bool:
    """Whether this request came through our nginx, which can serve files for us.

    Both must hold: the operator says nginx is in front (ACCEL_REDIRECT), and the request
    carries the header our nginx sets (Rack::Sendfile's convention), so a request sent
    straight to one host (health checks, tests) still gets the file itself.
    """
    return bool(current_app.config["ACCEL_REDIRECT"]) and \
        request.headers.get("X-Sendfile-Type") == "X-Accel-Redirect"


def front_secret() -> str:
    """What our nginx sends to prove a spooled file's path came from it (from SECRET_KEY)."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, b"gatehouse nginx upload spool", hashlib.sha256).hexdigest()


def spool_max_age() -> int:
    """Seconds after which no one can still write or read a spool file.

    nginx drops a body that stalls for BODY_TIMEOUT (each write refreshes the mtime),
    and the app's answer takes at most TIMEOUT (nginx's read timeout, gunicorn's
    worker timeout) after the body's last byte; one more minute of margin.
    """
    return int(current_app.config["BODY_TIMEOUT"]) + int(current_app.config["TIMEOUT"]) + 60


def upstream_timeout() -> int:
    """nginx's idle keep-alive to gunicorn: shorter than gunicorn's own."""
    keepalive = int(current_app.config["KEEPALIVE"])
    return max(1, min(keepalive - 15, keepalive * 4 // 5))


def _headers(indent: str, **extra: str) -> str:
    """proxy_set_header lines: a location that sets one must repeat them all (nginx)."""
    headers = {"Connection": '""', "Host": "$http_host",
               # Exactly one hop: whatever X-Forwarded-For the client sent is replaced.
               "X-Forwarded-For": "$remote_addr", "X-Forwarded-Proto": "$scheme",
               "X-Forwarded-Host": "$http_host", "X-Sendfile-Type": "X-Accel-Redirect", **extra}
    return "\n".join(f"{indent}proxy_set_header {name} {value};" for name, value in headers.items())


def _spool_locations(*, limits: dict[str, int], body_timeout: int, read_timeout: int,
                     api_errors: str) -> str:
    """The internal locations a spooled PUT is rewritten to, and the authorization call.

    `auth_request` runs in nginx's access phase, before anything reads the body, so an
    upload nobody may make never reaches the disk and `Expect: 100-continue` is only
    answered once the app said yes. The app refuses by answering 401/403 (the only
    refusals auth_request passes on) carrying its real answer in headers, which
    @upload_refused sends back as the app wrote it.
    """
    secret = front_secret()
    spool = package_storage.spool_root().resolve()
    refused = "".join(f"\n            auth_request_set {_refused(part)} "
                      f"$upstream_http_{(REFUSAL_PREFIX + part).lower().replace('-', '_')};"
                      for part in (*REFUSAL_PARTS, *REFUSAL_HEADERS))
    blocks = [f"""\
        # Asks the app about the original request, without its body.
        location = {AUTHORIZE} {{
            internal;
            client_max_body_size 0;  # the limits are the upload location's; no body here
            proxy_method PUT;
            proxy_pass_request_body off;
{_headers("            ", **{"Content-Length": '""', FRONT_HEADER: secret, AUTHORIZE_ONLY_HEADER: "1"})}
            proxy_pass http://gatehouse$request_uri;
            proxy_read_timeout {read_timeout}s;
        }}
"""]
    for family, limit in limits.items():
        blocks.append(f"""\
        location ^~ {SPOOL}{family} {{
            internal;
            auth_request {AUTHORIZE};{refused}
            error_page 401 403 = @upload_refused;
{api_errors if family == "packages" else ""}
            client_max_body_size {limit};
            client_body_timeout {body_timeout}s;
            send_timeout {body_timeout}s;
            # The whole body to a file beside the store (same filesystem: the app renames
            # it into its content address); removed when the request ends.
            client_body_temp_path {spool};
            client_body_in_file_only clean;
            client_body_buffer_size 1m;
            proxy_request_buffering on;
            proxy_buffering off;
            proxy_pass_request_body off;
{_headers("            ", **{"Content-Length": '""', FRONT_HEADER: secret,
                               SPOOL_FILE_HEADER: "$request_body_file",
                               SPOOL_LENGTH_HEADER: "$content_length"})}
            proxy_pass http://gatehouse$request_uri;
            proxy_read_timeout {read_timeout}s;
            proxy_send_timeout {read_timeout}s;
        }}
""")
    # A client waiting for `100 Continue` must not get one: nginx sends it before any
    # answer that has a body of ours (ngx_http_send_response discards the body, and
    # discarding answers Expect). Its own error page skips that, so such a client gets
    # the status and challenge with nginx's page as the body.
    unread_headers = "".join(f" add_header {name} {_refused(name)} always;"
                             for name in REFUSAL_HEADERS if name not in ("Content-Type", "Cache-Control"))
    unread = "\n".join(
        f'            if ($refused_unread = {status}) {{{unread_headers} add_header Cache-Control $refused_cache always; return {status}; }}'
        for status in REFUSAL_STATUSES)
    answers = unread + "\n" + "\n".join(
        f'            if ({_refused("Status")} = {status}) {{ return {status} "{_refused("Body")}$refused_end"; }}'
        for status in REFUSAL_STATUSES)
    headers = "\n".join(f"            add_header {name} {_refused(name)} always;"
                         for name in REFUSAL_HEADERS if name != "Cache-Control")
    blocks.append(f"""\
        location @upload_refused {{
            # No Content-Type of nginx's own: the app's, as it sent it.
            default_type "";
{headers}
            add_header Cache-Control $refused_cache always;
{answers}
            return 500;
        }}
""")
    return "\n".join(blocks)


def _refused(part: str) -> str:
    return "$refused_" + part.lower().replace("-", "_")


def _server(upstream: str) -> str:
    return upstream if upstream.startswith("unix:") else upstream.removeprefix("http://")


def config(*, listen: str, upstreams: list[str], runtime_dir: Path,
           worker_processes: str = "auto", user: str = "") -> str:
    """A complete nginx.conf: `nginx -p RUNTIME_DIR -c FILE` (add `-g 'daemon off;'`)."""
    settings = current_app.config
    run = Path(runtime_dir).resolve()
    packages = package_storage.content_root().resolve()
    body_timeout = int(settings["BODY_TIMEOUT"])
    read_timeout = int(settings["TIMEOUT"])
    max_upload = int(settings["MAX_PACKAGE_SIZE"]) + UPLOAD_OVERHEAD
    max_lfs = int(settings["MAX_LFS_OBJECT_SIZE"])
    servers = "\n".join(f"        server {_server(u)};" for u in upstreams)
    api_errors = "\n".join(f"        error_page {status} @api_{status};" for status in API_ERRORS)
    api_error_locations = "\n".join(
        f"    location @api_{status} {{\n"
        f"        default_type application/json;\n"
        f"        add_header Cache-Control no-store always;\n"
        + ("        add_header Retry-After 5 always;\n" if status >= 502 else "")
        + f"        return {status} '{{\"message\":\"{message}\"}}\\n';\n    }}"
        for status, message in API_ERRORS.items())
    proxy = f"""\
        proxy_pass http://gatehouse;
        proxy_read_timeout {read_timeout}s;
        proxy_send_timeout {read_timeout}s;"""
    streaming = f"""\
        proxy_request_buffering off;
        proxy_buffering off;
        client_body_timeout {body_timeout}s;
        send_timeout {body_timeout}s;"""
    return f"""\
# Generated by `flask --app wsgi nginx config`; regenerate it when the settings change.
{f"user {user};" if user else ""}
worker_processes {worker_processes};
pid {run}/nginx.pid;
error_log {run}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    default_type application/octet-stream;
    server_tokens off;
    sendfile on;
    tcp_nopush on;
    # The path as sent (not as rewritten to a spool location) without its query string:
    # credentials must never reach the log.
    map $request_uri $request_path {{ "~^(?<path>[^?]*)" $path; }}
    log_format gatehouse '$remote_addr "$request_method $request_path $server_protocol" $status '
                         '$body_bytes_sent $request_time "$http_user_agent"';
    access_log {run}/access.log gatehouse;
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;

    client_header_timeout {body_timeout}s;
    client_body_timeout {body_timeout}s;
    send_timeout {body_timeout}s;
    keepalive_timeout 75s;
    reset_timedout_connection on;
    client_max_body_size 10m;
    client_body_buffer_size 128k;
    large_client_header_buffers 4 16k;

    # How a refused upload's answer ends, and its caching (none, unless the app said).
    map {_refused("Newline")} $refused_end {{ "1" "\\n"; default ""; }}
    map "$http_expect:{_refused("Status")}" $refused_unread {{ "~*^100-continue:(?<refused_code>[0-9]+)$" $refused_code; default ""; }}
    map {_refused("Cache-Control")} $refused_cache {{ "" no-store; default {_refused("Cache-Control")}; }}

    upstream gatehouse {{
{servers}
        keepalive 256;
        keepalive_timeout {upstream_timeout()}s;
        keepalive_requests 10000;
    }}

    proxy_http_version 1.1;
{_headers("    ")}
    proxy_redirect off;

    server {{
        listen {listen};

        location / {{
{proxy}
        }}

        location /api/v4/ {{
{api_errors}
{proxy}
        }}

        location ~ {SPOOLED["packages"]} {{
            if ($request_method = PUT) {{ rewrite ^ {SPOOL}packages last; }}
{api_errors}
        client_max_body_size {max_upload};
        client_body_buffer_size 1m;
{streaming}
{proxy}
        }}

        location ~ {PACKAGES_LOCATION} {{
{api_errors}
        client_max_body_size {max_upload};
        # Unbuffered bodies pass through this buffer: large reads, few writes to gunicorn.
        client_body_buffer_size 1m;
{streaming}
{proxy}
        }}

        location ~ {LFS_LOCATION} {{
            if ($request_method = PUT) {{ rewrite ^ {SPOOL}lfs last; }}
        client_max_body_size {max_lfs};
        client_body_buffer_size 1m;
{streaming}
{proxy}
        }}

        location ~ {GIT_LOCATION} {{
        client_max_body_size 0;
{streaming}
{proxy}
        }}

{_spool_locations(limits={"packages": max_upload, "lfs": max_lfs}, body_timeout=body_timeout,
                  read_timeout=read_timeout, api_errors=api_errors)}
        # Files the app has authorized (X-Accel-Redirect); never reachable from outside.
        location ^~ {ACCEL_PACKAGES} {{
            internal;
            alias {packages}/;
        }}

{api_error_locations}
    }}
}}
"""
