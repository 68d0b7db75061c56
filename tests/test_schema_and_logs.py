"""The migrated schema matches the models; credentials never reach a log line."""
import logging

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from webapp.extensions import db
from webapp.logs import scrub


def test_migrations_produce_exactly_the_models_schema(ctx):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    # Type-only differences are our UTC type versus the DateTime it stores.
    assert [d for d in diff if not (isinstance(d, list) and d[0][0] == "modify_type")] == []


def test_scrub_removes_credentials():
    lines = {
        "Authorization: Basic Z2l0bGFiK2RlcGxveS10b2tlbi0xOmdsZHQtc2VjcmV0": "Authorization: [FILTERED]",
        "authorization=Bearer glpat-abcdefghijklmnopqrst": "authorization=[FILTERED]",
        "PRIVATE-TOKEN: glpat-abcdefghijklmnopqrst": "PRIVATE-TOKEN: [FILTERED]",
        "Deploy-Token: gldt-abcdefghij0123456789": "Deploy-Token: [FILTERED]",
        "cloning https://bot:gldt-abcdefghij0123456789@host/a.git": "cloning https://[FILTERED]@host/a.git",
        "token gldt-abcdefghij0123456789 used": "token gldt-[FILTERED] used",
        "GET /api/v4/user?private_token=secret123&x=1": "GET /api/v4/user?private_token=[FILTERED]&x=1",
    }
    for raw, clean in lines.items():
        assert scrub(raw) == clean


def test_the_quick_candidate_test_never_lets_a_credential_through():
    """scrub() skips lines its one search finds nothing in: every line the four patterns
    would change must be found, whatever its case."""
    from webapp.logs import _PATTERNS

    def slow(text):
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    lines = ["Job-Token = abcdef", "job-token:abc", "AUTHORIZATION :  bearer xyz",
             "GET /x?PASSWORD=hunter2", "GET /x?a=1&Access_Token=abc", "GET /x?paſſword=abc",
             "ssh://u:p@h/x", "HTTPS://bot:secret@host", "glrt-abcdefghijklmnop",
             "glpat-abcdefghijklmnopqrst!", "Private-Token\t: xyz",
             "registry token for deploy_token:gitlab+deploy-token-1 asked=[x] granted=[]",
             '127.0.0.1 - - "GET /jwt/auth?service=container_registry&scope=repository:a/b:pull '
             'HTTP/1.1" 200 712 "-" "docker"']
    changed = 0
    for line in lines:
        assert scrub(line) == slow(line), line
        changed += scrub(line) != line
    assert changed == len(lines) - 2  # all but the two lines with nothing secret in them


def test_app_log_records_are_scrubbed(app, caplog):
    with caplog.at_level(logging.INFO):
        app.logger.info("request with Authorization: Basic %s", "c2VjcmV0OnNlY3JldA==")
        app.logger.warning("url https://user:gldt-abcdefghij0123456789@example.com/x.git")
    text = caplog.text
    assert "c2VjcmV0OnNlY3JldA==" not in text and "gldt-abcdefghij" not in text
    assert text.count("[FILTERED]") == 2


def test_a_record_is_scrubbed_once_though_it_meets_the_filter_twice(app, caplog, monkeypatch):
    # The filter sits on the app's logger and on its handlers: one scrub is enough.
    from webapp import logs
    calls = []
    monkeypatch.setattr(logs, "scrub", lambda text: calls.append(text) or text)
    with caplog.at_level(logging.INFO):
        app.logger.info("registry token for %s", "deploy_token:gitlab+deploy-token-1")
    assert len(calls) == 1
