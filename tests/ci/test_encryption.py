"""The CI deploy token's secret at rest: ciphertext and digest only, bound to its row, rotatable."""
import base64
import os
import stat
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from webapp.config import _instance_secret
from webapp.services import secret_tokens
from webapp.extensions import db
from webapp.models import DeployToken
from webapp.services import deploy_tokens, encryption

from ..conftest import ENCRYPTION_KEY
from .conftest import as_dict

PROJECT = "tanuki/app"


@pytest.fixture
def project(make):
    return make.project(PROJECT)


def _row(app, token_id) -> DeployToken:
    with app.app_context():
        token = db.session.get(DeployToken, token_id)
        db.session.expunge(token)
        return token


def test_round_trip_with_a_fresh_nonce_each_time(ctx):
    key = encryption.parse_key(ENCRYPTION_KEY)
    first = encryption.encrypt("gldt-secret", b"row:1", key)
    second = encryption.encrypt("gldt-secret", b"row:1", key)
    assert first != second  # random nonce per value
    assert first.startswith(f"v1:{encryption.key_id(key)}:")
    assert encryption.decrypt(first, b"row:1", key) == "gldt-secret"
    assert encryption.decrypt(second, b"row:1", key) == "gldt-secret"


def test_associated_data_binds_a_value_to_its_row(ctx):
    sealed = encryption.encrypt("gldt-secret", deploy_tokens.secret_aad(1))
    with pytest.raises(encryption.DecryptionError, match="another row"):
        encryption.decrypt(sealed, deploy_tokens.secret_aad(2))


def test_tampering_is_detected(ctx):
    sealed = encryption.encrypt("gldt-secret", b"a")
    version, kid, body = sealed.split(":")
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[-1] ^= 1
    tampered = f"{version}:{kid}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    with pytest.raises(encryption.DecryptionError):
        encryption.decrypt(tampered, b"a")
    with pytest.raises(encryption.DecryptionError, match="format"):
        encryption.decrypt("plain text", b"a")


def test_another_key_is_named_in_the_error(ctx):
    sealed = encryption.encrypt("gldt-secret", b"a")
    other = base64.b64decode(encryption.new_key())
    with pytest.raises(encryption.DecryptionError, match="sealed with key"):
        encryption.decrypt(sealed, b"a", other)


@pytest.mark.parametrize("bad", ["", "short", base64.b64encode(b"x" * 16).decode(),
                                 base64.b64encode(b"x" * 33).decode(), "!" * 44])
def test_malformed_keys_are_refused(bad):
    with pytest.raises(encryption.EncryptionKeyError, match="32 random bytes"):
        encryption.parse_key(bad)


def test_only_the_project_ci_token_keeps_a_ciphertext(project, make, app):
    ci_id, _, ci_secret = make.token(PROJECT, name="gitlab-deploy-token")
    other_id, _, _ = make.token(PROJECT, name="gitlab-deploy-token2")
    group_id, _, _ = make.token("tanuki", name="gitlab-deploy-token")
    ci_row = _row(app, ci_id)
    assert ci_row.token_encrypted and ci_secret not in ci_row.token_encrypted
    assert ci_row.token_digest == secret_tokens.digest(ci_secret)
    assert _row(app, other_id).token_encrypted is None
    assert _row(app, group_id).token_encrypted is None


def _all_text_in_database(app) -> str:
    """Every value of every column of every table, as text."""
    chunks = []
    with app.app_context():
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(sa.select(table)):
                chunks.extend(repr(value) for value in row)
    return "\n".join(chunks)


def test_plain_secret_is_not_in_the_database(project, make, runner, fetch, app):
    _, _, secret = make.token(PROJECT, name="gitlab-deploy-token")
    _, runner_secret = runner(PROJECT)
    assert as_dict(fetch(runner_secret))["CI_DEPLOY_PASSWORD"] == secret  # and recoverable
    text = _all_text_in_database(app)
    assert secret_tokens.digest(secret) in text and "v1:" in text
    for value in (secret, secret[len("gldt-"):], runner_secret, runner_secret[len("glrt-"):]):
        assert value not in text
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite:///"):
        with app.app_context():
            db.engine.dispose()  # nothing left in a connection's cache
        data = b"".join(p.read_bytes() for p in Path(url[len("sqlite:///"):]).parent.iterdir()
                        if p.is_file())
        assert secret_tokens.digest(secret).encode() in data  # we are reading the right file
        for value in (secret, runner_secret):
            assert value.encode() not in data
            assert value[5:].encode() not in data


def test_swapped_ciphertexts_do_not_open(make, runner, fetch, app):
    make.project(PROJECT)
    make.project("tanuki/other")
    mine, _, my_secret = make.token(PROJECT, name="gitlab-deploy-token")
    theirs, _, _ = make.token("tanuki/other", name="gitlab-deploy-token")
    with app.app_context():
        a, b = db.session.get(DeployToken, mine), db.session.get(DeployToken, theirs)
        a.token_encrypted, b.token_encrypted = b.token_encrypted, a.token_encrypted
        db.session.commit()
    _, other_runner = runner("tanuki/other")
    response = fetch(other_runner)
    assert response.status_code == 500
    assert my_secret not in response.get_data(as_text=True)


def test_key_file_is_created_once_0600_on_first_use(project, make, runner, fetch, app, tmp_path):
    key_file = tmp_path / "instance" / "encryption_key"
    app.config.update(ENCRYPTION_KEY=None, ENCRYPTION_KEY_FILE=str(key_file))
    _, _, _ = make.token(PROJECT, name="deploy")
    assert not key_file.exists()  # only a recoverable secret needs it
    _, _, secret = make.token(PROJECT, name="gitlab-deploy-token")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    assert len(base64.b64decode(key)) == 32
    _, runner_secret = runner(PROJECT)
    assert as_dict(fetch(runner_secret))["CI_DEPLOY_PASSWORD"] == secret
    assert key_file.read_text() == key
    assert os.listdir(key_file.parent) == ["encryption_key"]  # no temporary files left


def test_concurrent_first_use_agrees_on_one_key(tmp_path):
    path = tmp_path / "encryption_key"
    barrier, keys = threading.Barrier(16), []

    def first_use():
        barrier.wait()
        keys.append(_instance_secret(path, make=encryption.new_key))

    threads = [threading.Thread(target=first_use) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 16 and set(keys) == {path.read_text()}
    assert os.listdir(tmp_path) == ["encryption_key"]


# Rotation -----------------------------------------------------------------------------

def _two_ci_tokens(make):
    make.project(PROJECT)
    make.project("tanuki/other")
    return [make.token(p, name="gitlab-deploy-token") for p in (PROJECT, "tanuki/other")]


def test_rotate_reencrypts_everything_under_the_new_key(make, runner, fetch, app, tmp_path):
    tokens = _two_ci_tokens(make)
    make.token(PROJECT, name="not-ci")
    before = {t[0]: _row(app, t[0]).token_encrypted for t in tokens}
    new_file = tmp_path / "new-key"

    result = app.test_cli_runner().invoke(args=["encryption", "rotate", "--new-key-file",
                                                str(new_file)])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 2 secret(s)" in result.output
    assert "GATEHOUSE_ENCRYPTION_KEY" in result.output  # the key came from the environment
    new_key = new_file.read_text()
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert new_key not in result.output  # the key is never printed

    old, new = encryption.parse_key(ENCRYPTION_KEY), encryption.parse_key(new_key)
    with app.app_context():
        for token_id, _, secret in tokens:
            row = db.session.get(DeployToken, token_id)
            assert row.token_encrypted != before[token_id]
            assert row.token_digest == secret_tokens.digest(secret)
            aad = deploy_tokens.secret_aad(token_id)
            assert encryption.decrypt(row.token_encrypted, aad, new) == secret
            with pytest.raises(encryption.DecryptionError):
                encryption.decrypt(row.token_encrypted, aad, old)

    _, runner_secret = runner(PROJECT)
    assert fetch(runner_secret).status_code == 500  # this server still holds the old key
    app.config["ENCRYPTION_KEY"] = new_key
    assert as_dict(fetch(runner_secret))["CI_DEPLOY_PASSWORD"] == tokens[0][2]

    again = app.test_cli_runner().invoke(args=["encryption", "rotate", "--new-key-file",
                                               str(new_file)])
    assert again.exit_code == 0 and "Re-encrypted 0 secret(s)" in again.output


def test_rotate_replaces_the_instance_key_file(project, make, runner, fetch, app, tmp_path):
    key_file = tmp_path / "instance" / "encryption_key"
    app.config.update(ENCRYPTION_KEY=None, ENCRYPTION_KEY_FILE=str(key_file))
    _, _, secret = make.token(PROJECT, name="gitlab-deploy-token")
    old_key = key_file.read_text()
    new_file = tmp_path / "new-key"
    new_file.write_text(encryption.new_key())
    result = app.test_cli_runner().invoke(args=["encryption", "rotate", "--new-key-file",
                                                str(new_file)])
    assert result.exit_code == 0, result.output
    assert key_file.read_text() == new_file.read_text() != old_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    _, runner_secret = runner(PROJECT)  # no restart: the file is read on use
    assert as_dict(fetch(runner_secret))["CI_DEPLOY_PASSWORD"] == secret


def test_rotate_is_all_or_nothing(make, app, tmp_path):
    (first_id, _, _), (second_id, _, _) = _two_ci_tokens(make)
    with app.app_context():  # a row that no key can open
        db.session.get(DeployToken, second_id).token_encrypted = "v1:00000000:AAAA"
        db.session.commit()
    before = _row(app, first_id).token_encrypted
    new_file = tmp_path / "new-key"
    result = app.test_cli_runner().invoke(args=["encryption", "rotate", "--new-key-file",
                                                str(new_file)])
    assert result.exit_code == 1
    assert f"deploy_tokens id {second_id}" in result.output
    assert _row(app, first_id).token_encrypted == before


def test_rotate_refuses_a_malformed_new_key(project, make, app, tmp_path):
    token_id, _, _ = make.token(PROJECT, name="gitlab-deploy-token")
    before = _row(app, token_id).token_encrypted
    bad = tmp_path / "bad-key"
    bad.write_text("not a key")
    result = app.test_cli_runner().invoke(args=["encryption", "rotate", "--new-key-file",
                                                str(bad)])
    assert result.exit_code == 1 and "32 random bytes" in result.output
    assert _row(app, token_id).token_encrypted == before


def test_a_bad_key_creates_no_ci_token(project, app):
    app.config["ENCRYPTION_KEY"] = "too-short"
    result = app.test_cli_runner().invoke(args=[
        "deploy-tokens", "create", PROJECT, "--name", "gitlab-deploy-token",
        "--scopes", "read_repository"])
    assert result.exit_code == 1 and "32 random bytes" in result.output
    assert "Traceback" not in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(DeployToken.id))) == 0
