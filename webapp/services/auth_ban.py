"""Ban client IPs that fail authentication too often (GitLab's git and /jwt/auth ban).

`AUTH_BAN_MAX_RETRY` failures from one IP within `AUTH_BAN_FIND_TIME` seconds ban it for
`AUTH_BAN_TIME` seconds. A successful authentication resets the IP's count, as GitLab
does. Counters are shared by every worker and host: in Redis when `REDIS_URL` is set,
otherwise in the database (`auth_failures`).

Use from a protocol view:

    if auth_ban.is_banned(ip): answer 403 before looking at any credentials
    bad credentials       → auth_ban.record_failure(ip), answer 401
    good credentials      → auth_ban.record_success(ip)
"""
import random
from datetime import datetime, timedelta
from typing import Optional

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..models import AuthFailure, utcnow

BANNED_MESSAGE = "Too many failed authentication attempts from this IP"


def is_banned(ip: Optional[str]) -> bool:
    """Whether this IP is banned right now."""
    return bool(ip) and _backend().is_banned(ip)


def record_failure(ip: Optional[str]) -> bool:
    """Count a failed authentication; return True when it got the IP banned."""
    return bool(ip) and _backend().record_failure(ip)


def record_success(ip: Optional[str]) -> None:
    """Reset the IP's failure count after a successful authentication."""
    if ip:
        _backend().record_success(ip)


def _settings() -> tuple[int, float, float]:
    config = current_app.config
    return (int(config["AUTH_BAN_MAX_RETRY"]), float(config["AUTH_BAN_FIND_TIME"]),
            float(config["AUTH_BAN_TIME"]))


def _backend():
    url = current_app.config.get("REDIS_URL")
    if url:
        return RedisBackend(_redis(url), current_app.config.get("REDIS_PREFIX") or "")
    return DatabaseBackend()


def _redis(url: str):
    # One client (and connection pool) per process and URL; redis-py is thread-safe.
    clients = current_app.extensions.setdefault("gatehouse_redis", {})
    if url not in clients:
        import redis
        clients[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    return clients[url]


class DatabaseBackend:
    """Counters in the `auth_failures` table: one atomic upsert per failure."""

    def is_banned(self, ip: str, now: Optional[datetime] = None) -> bool:
        now = now or utcnow()
        until = db.session.scalar(sa.select(AuthFailure.banned_until).where(AuthFailure.ip == ip))
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

    def record_success(self, ip: str, now: Optional[datetime] = None) -> None:
        now = now or utcnow()
        # Only rows that hold no live ban: a success never lifts a ban early.
        result = db.session.execute(
            sa.delete(AuthFailure)
            .where(AuthFailure.ip == ip,
                   sa.or_(AuthFailure.banned_until.is_(None), AuthFailure.banned_until <= now))
            .execution_options(synchronize_session=False))
        if result.rowcount:
            db.session.commit()

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

    def record_success(self, ip: str) -> None:
        self.client.delete(self._keys(ip)[0])


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
