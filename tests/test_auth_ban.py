"""The failed-authentication ban, on both backends: the database and Redis."""
import time
from datetime import timedelta

import pytest

from webapp.models import AuthFailure, utcnow
from webapp.services import auth_ban
from webapp.extensions import db

from .support import redis_server

IP = "198.51.100.7"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["database", "redis"])
def ban(request, ctx):
    """The ban service with small numbers: 3 failures within 60 s ban for 60 s."""
    ctx.config.update(AUTH_BAN_MAX_RETRY=3, AUTH_BAN_FIND_TIME=60, AUTH_BAN_TIME=60)
    if request.param == "redis":
        ctx.config["REDIS_URL"] = request.getfixturevalue("redis_url")
        ctx.config["REDIS_PREFIX"] = f"test-{request.node.name}:"
        client = auth_ban._redis(ctx.config["REDIS_URL"])
        client.flushdb()
    yield auth_ban


def test_failures_below_the_limit_do_not_ban(ban):
    assert ban.record_failure(IP) is False
    assert ban.record_failure(IP) is False
    assert not ban.is_banned(IP)


def test_the_limit_th_failure_bans_the_ip(ban):
    results = [ban.record_failure(IP) for _ in range(3)]
    assert results == [False, False, True]
    assert ban.is_banned(IP)


def test_a_ban_holds_one_ip_only(ban):
    for _ in range(3):
        ban.record_failure(IP)
    assert not ban.is_banned("198.51.100.8")
    assert not ban.is_banned("2001:db8::1")


def test_the_ban_lifts_after_the_ban_time(ban, ctx):
    ctx.config["AUTH_BAN_TIME"] = 0.5
    for _ in range(3):
        ban.record_failure(IP)
    assert ban.is_banned(IP)
    deadline = time.monotonic() + 10
    while ban.is_banned(IP):
        assert time.monotonic() < deadline, "the ban did not lift"
        time.sleep(0.05)
    # After the ban the count starts again from zero.
    assert ban.record_failure(IP) is False


def test_failures_older_than_the_find_time_are_forgotten(ban, ctx):
    ctx.config["AUTH_BAN_FIND_TIME"] = 0.3
    ban.record_failure(IP)
    ban.record_failure(IP)
    time.sleep(0.4)  # let the window run out: expiry, not a race, is what is tested
    assert ban.record_failure(IP) is False
    assert ban.record_failure(IP) is False
    assert not ban.is_banned(IP)


def test_no_ip_is_never_banned(ban):
    assert ban.record_failure("") is False
    assert not ban.is_banned("")
    assert not ban.is_banned(None)


def test_database_window_restarts_after_find_time(ctx):
    ctx.config.update(AUTH_BAN_MAX_RETRY=3, AUTH_BAN_FIND_TIME=180, AUTH_BAN_TIME=3600)
    backend = auth_ban.DatabaseBackend()
    start = utcnow()
    backend.record_failure(IP, now=start)
    backend.record_failure(IP, now=start + timedelta(seconds=100))
    # 181 s after the first failure its window is over: this one counts as the first.
    assert backend.record_failure(IP, now=start + timedelta(seconds=181)) is False
    row = db.session.get(AuthFailure, IP)
    assert row.failures == 1
    assert backend.record_failure(IP, now=start + timedelta(seconds=182)) is False
    assert backend.record_failure(IP, now=start + timedelta(seconds=183)) is True
    assert backend.is_banned(IP, now=start + timedelta(seconds=183 + 3599))
    assert not backend.is_banned(IP, now=start + timedelta(seconds=183 + 3600))


def test_database_purge_forgets_only_stale_rows(ctx):
    ctx.config.update(AUTH_BAN_MAX_RETRY=2, AUTH_BAN_FIND_TIME=180, AUTH_BAN_TIME=3600)
    backend = auth_ban.DatabaseBackend()
    start = utcnow()
    backend.record_failure("192.0.2.1", now=start)                      # stale later
    backend.record_failure("192.0.2.2", now=start)
    backend.record_failure("192.0.2.2", now=start)                      # banned
    backend.record_failure("192.0.2.3", now=start + timedelta(seconds=170))  # fresh
    backend.purge(start + timedelta(seconds=200))
    db.session.commit()
    assert db.session.get(AuthFailure, "192.0.2.1") is None
    assert db.session.get(AuthFailure, "192.0.2.2") is not None
    assert db.session.get(AuthFailure, "192.0.2.3") is not None
