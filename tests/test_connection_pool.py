"""On PostgreSQL each gunicorn thread keeps its connection between requests, and a
checkout pings the server; SQLite is never pinged.

SQLAlchemy's default pool keeps 5 connections and closes any further ones when they come
back. With gunicorn's 8 threads per worker, a busy worker then opened a new connection
(and PostgreSQL a new server process) for some requests: measured 100-200 new sessions
in 5 s of `/jwt/auth` from 8 clients, which cost the whole stack a quarter of its rate.
"""
import threading

import pytest
import sqlalchemy as sa

from webapp import create_app
from webapp.extensions import db


def _engine(url: str, **config):
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "x", **config})
    with app.app_context():
        return db.engine


def test_the_pool_holds_a_connection_for_every_thread(migrated):
    if not migrated.startswith("postgres"):
        pytest.skip("SQLite opens a file, not a server process (run with DATABASE_URL=postgresql://...)")
    threads = 7
    engine = _engine(migrated, THREADS=threads)
    opened = []
    sa.event.listen(engine.pool, "connect", lambda *args: opened.append(1))
    all_in = threading.Barrier(threads)

    def request():  # every thread holds a connection at the same moment, as under load
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            all_in.wait(timeout=30)

    try:
        for _ in range(3):  # three rounds of "requests"
            workers = [threading.Thread(target=request) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        # Opened once per thread, then kept: later rounds reuse them.
        assert len(opened) == threads
        assert engine.pool.checkedin() == threads
    finally:
        engine.dispose()


def test_a_configured_pool_size_wins(migrated):
    if not migrated.startswith("postgres"):
        pytest.skip("the pool is sized only on PostgreSQL")
    engine = _engine(migrated, THREADS=8,
                     SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True, "pool_size": 3})
    try:
        assert engine.pool.size() == 3
    finally:
        engine.dispose()


def test_a_checkout_pings_the_server_on_postgresql_only(migrated, monkeypatch):
    # A PostgreSQL connection the server dropped is noticed and replaced when it is
    # checked out. A SQLite connection is a file handle nothing can drop: pinging it
    # would only cost every request a statement.
    engine = _engine(migrated)
    pings = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping",
                        lambda connection: pings.append(1) or real_ping(connection))
    try:
        for _ in range(2):  # the second checkout takes the pooled connection back
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        assert bool(pings) == migrated.startswith("postgres")
    finally:
        engine.dispose()
