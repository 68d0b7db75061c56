"""`flask --app wsgi notify` as cron runs it, twice at the same moment, against a real SMTP
server: every maintainer gets exactly one mail per token and threshold.

Meant for PostgreSQL (DATABASE_URL=postgresql://...), where the two passes really run
side by side; on SQLite they take turns at the write lock, which must give the same result.
"""
import os
import re
import subprocess
from collections import Counter
from datetime import timedelta

import pytest

from webapp.models import utcnow

from ..conftest import ENCRYPTION_KEY
from ..smtp import smtp_server
from ..support import ROOT, VENV_BIN

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
TOKENS = 8


def _notify_twice_at_once(migrated, smtp_url, tmp_path) -> list[subprocess.CompletedProcess]:
    env = dict(os.environ, DATABASE_URL=migrated, GATEHOUSE_SMTP_URL=smtp_url,
               GATEHOUSE_SECRET_KEY="notify-test", GATEHOUSE_DATA_DIR=str(tmp_path / "data"),
               GATEHOUSE_ENCRYPTION_KEY=ENCRYPTION_KEY,
               GATEHOUSE_EXTERNAL_URL="http://gatehouse.test")
    cmd = [str(VENV_BIN / "flask"), "--app", "wsgi", "notify"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return results


def test_two_concurrent_passes_send_each_mail_once(app, make, migrated, tmp_path):
    make.project("tanuki/infra/app")
    for name, path, role in (("olga", "tanuki", "owner"), ("mike", "tanuki/infra", "maintainer"),
                             ("pia", "tanuki/infra/app", "maintainer"),
                             ("dev", "tanuki", "developer")):
        make.user(name)
        make.member(path, name, role)
    for n in range(TOKENS):
        make.token("tanuki/infra/app", name=f"t{n}", expires_at=utcnow() + timedelta(days=5))
    with smtp_server(login=("mailer", "pw")) as (url, received):
        decided = []
        for _ in range(2):  # the second round finds every decision taken
            results = _notify_twice_at_once(migrated, url, tmp_path)
            for result in results:
                assert result.returncode == 0, result.stdout + result.stderr
            decided.append([int(re.search(r"(\d+) token\(s\)", r.stdout).group(1))
                            for r in results])
        # Between them the two first passes decided every token once; later, none.
        assert sum(decided[0]) == TOKENS and decided[1] == [0, 0]
        per_person = Counter(r for rcpts, _ in received.mails for r in rcpts)
        assert per_person == {"olga@example.com": TOKENS, "mike@example.com": TOKENS,
                              "pia@example.com": TOKENS}
        subjects = Counter((tuple(rcpts), m["Subject"]) for rcpts, m in received.mails)
        assert set(subjects.values()) == {1}  # no mail twice
        assert len(received.logins) >= 1
