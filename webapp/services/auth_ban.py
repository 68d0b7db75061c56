"""Ban client IPs that fail authentication too often, on every door.

`AUTH_BAN_MAX_RETRY` failures from one IP within `AUTH_BAN_FIND_TIME` seconds ban it for
`AUTH_BAN_TIME` seconds (GitLab.com's numbers). Unlike GitLab, a successful login does
not reset the count: otherwise anyone with an account could interleave good logins with
guesses at someone else's password and never be banned.

Counters are shared by every worker and host: in Redis when `REDIS_URL` is set,
otherwise in the database (`auth_failures`). Redis gets short timeouts; while it is
unreachable the database counters stand in, and that is logged once a minute, not per
request. Only the chain in services/credentials.py calls this module.
"""
import logging
import random
import threading
import time
from datetime import datetime, timedelta
from typing import Optional

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import AuthFailure, utcnow

BANNED_MESSAGE = ("Too many failed authentication attempts from this IP: try again later, "
                  "with the right credentials")
log = logging.getLogger(__name__)


def is_banned(ip: Optional[str]) -> bool:
    """Whether this IP is banned right now."""
    return bool(ip) and _call("is_banned", ip)


def record_failure(ip: Optional[str]) -> bool:
    """Count a failed authentication; return True when it got the IP banned."""
    return bool(ip) and _call("record_failure", ip)


def _settings() -> tuple[int, float, float]:
    config = current_app.config
    return (int(config["AUTH_BAN_MAX_RETRY"]), float(config["AUTH_BAN_FIND_TIME"]),
            float(config["AUTH_BAN_TIME"]))


def _call(method: str, ip: str) -> bool:
    url = current_app.config.get("REDIS_URL")
    if url and _REDIS_STATE.usable():
        import redis
        try:
            backend = RedisBackend(_redis(url), current_app.config.get("REDIS_PREFIX") or "")
            return getattr(backend, method)(ip)
        except redis.RedisError as error:
            _REDIS_STATE.failed(error)
    return getattr(DatabaseBackend(), method)(ip)


class _RedisState:
    """After a Redis failure, use the database for a while instead of waiting on Redis."""

    RETRY_AFTER = 10.0  # seconds before Redis is tried again
    LOG_EVERY = 60.0

    def __init__(self):
        self.lock = threading.Lock()
        self.down_until = 0.0
        self.logged_at = -self.LOG_EVERY

    def usable(self) -> bool:
        return time.monotonic() >= self.down_until

    def failed(self, error: Exception) -> None:
        now = time.monotonic()
        with self.lock:
            self.down_until = now + self.RETRY_AFTER
            if now - self.logged_at >= self.LOG_EVERY:
                self.logged_at = now
                log.warning("Redis is unreachable (%s): the failed-login ban uses the "
                            "database counters until it is back", error)


_REDIS_STATE = _RedisState()


def _redis(url: str):
    # One client (and connection pool) per process and URL; redis-py is thread-safe.
    clients = current_app.extensions.setdefault("gatehouse_redis", {})
    if url not in clients:
        import redis
        timeout = float(current_app.config["REDIS_TIMEOUT"])
        clients[url] = redis.Redis.from_url(url, socket_timeout=timeout,
                                            socket_connect_timeout=timeout)
    return clients[url]


# Built once: every authenticated request asks (without Redis), and building a statement
# costs more than running it. On the table's columns, not the mapped class's, so the
# session runs it as plain SQL without the ORM's result handling (a third cheaper).
_FAILURES = AuthFailure.__table__.c
_BANNED_UNTIL = sa.select(_FAILURES.banned_until).where(_FAILURES.ip == sa.bindparam("ip"))


class DatabaseBackend:
    """Counters in the `auth_failures` table: one atomic upsert per failure."""

    def is_banned(self, ip: str, now: Optional[datetime] = None) -> bool:
        now = now or utcnow()
        until = db.session.scalar(_BANNED_UNTIL, {"ip": ip})
        return until is not None and until > now

    def record_failure(self, ip: str, now: Optional[datetime] = None) -> bool:
        now = now or utcnow()
        max_retry, find_time, ban_time = _settings()
        window_start = now - timedelta(seconds=find_time)
        table = AuthFailure.__table__
        insert = _dialect_insert()(table).values(ip=ip, failures=1, window_started_at=now)
        # A count whose window has run out starts again at 1 instead of growing forever.
        stale = table.c.window_started_at <= window_start
        failures = db.session.scalar(insert.on_conflict_do_update(
            index_elements=[table.c.ip],
            set_={"failures": sa.case((stale, 1), else_=table.c.failures + 1),
                  "window_started_at": sa.case((stale, now), else_=table.c.window_started_at)},
        ).returning(table.c.failures))
        banned = False
        if failures >= max_retry:
            result = db.session.execute(
                sa.update(AuthFailure)
                .where(AuthFailure.ip == ip, AuthFailure.failures >= max_retry)
                .values(failures=0, window_started_at=now,
                        banned_until=now + timedelta(seconds=ban_time))
                .execution_options(synchronize_session=False))
            banned = result.rowcount > 0
        if random.random() < 0.01:
            self.purge(now)
        db.session.commit()
        return banned

    def purge(self, now: datetime) -> None:
        """Forget IPs whose window and ban have both run out (keeps the table small)."""
        _, find_time, _ = _settings()
        db.session.execute(
            sa.delete(AuthFailure)
            .where(AuthFailure.window_started_at <= now - timedelta(seconds=find_time),
                   sa.or_(AuthFailure.banned_until.is_(None), AuthFailure.banned_until <= now))
            .execution_options(synchronize_session=False))


def _dialect_insert():
    name = db.session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise RuntimeError(f"the database ban backend supports SQLite and PostgreSQL, not {name}")
    return insert


class RedisBackend:
    """Counters in Redis: a counter key that expires with its window, a ban key with the ban."""

    def __init__(self, client, prefix: str = ""):
        self.client = client
        self.prefix = prefix

    def _keys(self, ip: str) -> tuple[str, str]:
        return f"{self.prefix}auth_ban:failures:{ip}", f"{self.prefix}auth_ban:banned:{ip}"

    def is_banned(self, ip: str) -> bool:
        return bool(self.client.exists(self._keys(ip)[1]))

    def record_failure(self, ip: str) -> bool:
        max_retry, find_time, ban_time = _settings()
        count_key, ban_key = self._keys(ip)
        pipe = self.client.pipeline(transaction=True)
        # The first failure opens the window; INCR keeps the key's expiry.
        pipe.set(count_key, 0, px=_ms(find_time), nx=True)
        pipe.incr(count_key)
        failures = pipe.execute()[1]
        if failures < max_retry:
            return False
        pipe = self.client.pipeline(transaction=True)
        pipe.set(ban_key, 1, px=_ms(ban_time))
        pipe.delete(count_key)
        pipe.execute()
        return True


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
