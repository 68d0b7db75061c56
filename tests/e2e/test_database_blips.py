"""A PostgreSQL backend killed under a request in flight (failover, restart, an operator).

The request is held at a known point: the test locks the table the request reads or
writes, waits until PostgreSQL shows the request's backend waiting on that lock, kills
that backend, then lets go of the lock.
"""
import threading
import time

import psycopg
import pytest
import requests

from ..conftest import _admin_url, gunicorn


@pytest.fixture
def pg(migrated):
    if not migrated.startswith("postgres"):
        pytest.skip("kills a PostgreSQL backend (run with DATABASE_URL=postgresql://...)")
    return _admin_url(migrated)


@pytest.fixture
def server(pg, migrated, tmp_path):
    with gunicorn(migrated, tmp_path / "data", tmp_path, workers=1) as live:
        yield live


def killed_mid_request(pg: str, send):
    """Run `send()` while its backend waits on a lock, kill that backend, return the answer."""
    answer = {}
    with psycopg.connect(pg) as locker:
        locker.execute("LOCK TABLE deploy_tokens IN ACCESS EXCLUSIVE MODE")
        thread = threading.Thread(target=lambda: answer.setdefault("response", send()))
        thread.start()
        with psycopg.connect(pg, autocommit=True) as admin:
            deadline = time.monotonic() + 60
            while True:
                waiting = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()").fetchall()
                if waiting:
                    break
                assert time.monotonic() < deadline, "the request never reached the database"
                time.sleep(0.05)
            for (pid,) in waiting:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        locker.rollback()
    thread.join(timeout=60)
    return answer["response"]


def test_a_read_whose_backend_was_killed_is_answered(pg, server, make):
    project = make.project("tanuki/blip")
    owner = make.user("blipper", admin=True)
    pat = make.pat(owner)
    make.token("tanuki/blip", ["read_repository"], name="existing")
    url = f"{server.url}/api/v4/projects/{project.id}/deploy_tokens"

    response = killed_mid_request(pg, lambda: requests.get(
        url, headers={"PRIVATE-TOKEN": pat}, timeout=60))
    assert response.status_code == 200, response.text
    assert [t["name"] for t in response.json()] == ["existing"]


def test_a_write_whose_backend_was_killed_is_a_json_503(pg, server, make):
    project = make.project("tanuki/blip")
    owner = make.user("blipper", admin=True)
    pat = make.pat(owner)
    url = f"{server.url}/api/v4/projects/{project.id}/deploy_tokens"

    response = killed_mid_request(pg, lambda: requests.post(
        url, headers={"PRIVATE-TOKEN": pat}, timeout=60,
        json={"name": "during-blip", "scopes": ["read_repository"]}))
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Retry-After"] == "5"
    # The next attempt, as the client is told to make, works.
    again = requests.post(url, headers={"PRIVATE-TOKEN": pat}, timeout=60,
                          json={"name": "after-blip", "scopes": ["read_repository"]})
    assert again.status_code == 201, again.text
