"""gunicorn settings for Gatehouse (`gunicorn -c gunicorn.conf.py wsgi:app`)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The settings the app reads too keep one default, the app's.
from webapp.config import DEFAULTS  # noqa: E402


def _setting(name: str) -> int:
    return int(os.environ.get(f"GATEHOUSE_{name}", DEFAULTS[name]))


bind = os.environ.get("GATEHOUSE_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("GATEHOUSE_WORKERS", "2"))
# Threads let one worker stream a long clone or upload while it answers other requests.
worker_class = "gthread"
# The app sizes its PostgreSQL connection pool by the same setting.
threads = _setting("THREADS")
# Large clones and uploads stream for minutes; the sync default of 30 s would cut them.
timeout = _setting("TIMEOUT")
# gunicorn's default of 2 s closes idle connections while clients (or nginx) are already
# sending their next request on them: those requests are dropped unanswered. nginx's
# upstream keep-alive (`nginx config`) is shorter than this, so gunicorn never closes first.
keepalive = _setting("KEEPALIVE")
# SIGTERM waits this long for requests in flight; idle keep-alive connections do not count.
graceful_timeout = int(os.environ.get("GATEHOUSE_GRACEFUL_TIMEOUT", "30"))
control_socket_disable = True
accesslog = "-"
# The path without its query string: credentials must never reach the log. The
# response's type shows what content negotiation chose (PEP 691 JSON or HTML).
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s" "%({content-type}o)s"'
