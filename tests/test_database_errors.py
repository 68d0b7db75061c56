"""A database blip: reads are retried once on a fresh connection, the rest get a 503."""
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from webapp.extensions import csrf, db


def killed_connection() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"),
                                   connection_invalidated=True)


@pytest.fixture
def flaky(app):
    """Routes that lose their database connection the first `failures` times they run."""
    calls = {"n": 0, "failures": 1}

    def view():
        calls["n"] += 1
        if calls["n"] <= calls["failures"]:
            raise killed_connection()
        return {"answer": db.session.execute(text("SELECT 42")).scalar()}

    csrf.exempt(view)  # a machine route, as the protocol blueprints are
    for path in ("/api/v4/test/flaky", "/test/flaky"):
        app.add_url_rule(path, path, view, methods=["GET", "POST"])
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return calls


def test_a_read_whose_connection_died_is_retried_once(client, flaky):
    response = client.get("/api/v4/test/flaky")
    assert response.status_code == 200 and response.json == {"answer": 42}
    assert flaky["n"] == 2


def test_a_read_that_fails_twice_is_a_json_503(client, flaky):
    flaky["failures"] = 5
    response = client.get("/api/v4/test/flaky")
    assert flaky["n"] == 2
    assert response.status_code == 503
    assert response.json["message"] == "503 Service Unavailable"
    assert response.headers["Retry-After"] == "5"


def test_a_write_is_never_retried_and_is_a_json_503(client, flaky):
    response = client.post("/api/v4/test/flaky")
    assert flaky["n"] == 1
    assert response.status_code == 503 and response.is_json
    assert response.headers["Retry-After"] == "5"


def test_browser_routes_get_a_plain_503_not_a_page(client, flaky):
    flaky["failures"] = 5
    response = client.get("/test/flaky")
    assert response.status_code == 503 and response.mimetype == "text/plain"
    assert response.headers["Retry-After"] == "5"


def test_other_database_errors_stay_500(app, client):
    def broken():
        raise sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    app.add_url_rule("/api/v4/test/broken", "broken", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get("/api/v4/test/broken")
    assert response.status_code == 500 and response.is_json


def test_health_and_readiness(client):
    health = client.get("/-/health")
    assert health.status_code == 200 and health.data == b"Gatehouse OK"
    ready = client.get("/-/readiness")
    assert ready.status_code == 200
    assert ready.json == {"status": "ok", "db_check": [{"status": "ok"}]}


def test_readiness_fails_when_the_database_does_not_answer(app, client, monkeypatch):
    def down(*args, **kwargs):
        raise killed_connection()
    monkeypatch.setattr(db.session, "execute", down)
    ready = client.get("/-/readiness")
    assert ready.status_code == 503 and ready.json["status"] == "failed"
