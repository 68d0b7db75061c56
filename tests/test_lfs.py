"""Git LFS over HTTP: the batch API, signed transfers, storage rules, locks, JSON errors."""
import base64
import hashlib
import json

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import LfsObject, LfsObjectProject
from webapp.services import lfs, package_storage

from .conftest import PASSWORD

MEDIA = "application/vnd.git-lfs+json"
CONTENT = b"the bytes of a large file\n"
OID = hashlib.sha256(CONTENT).hexdigest()


def basic(username, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def batch(client, repo, operation, objects, headers=None):
    return client.post(f"/{repo}.git/info/lfs/objects/batch", headers={
        "Content-Type": MEDIA, "Accept": MEDIA, **(headers or {})},
        data=json.dumps({"operation": operation, "transfers": ["basic"], "objects": objects}))


def relative(href):
    return href.split("http://gatehouse.test", 1)[1]


@pytest.fixture
def devs(make):
    make.project("tanuki/a")
    make.project("tanuki/b")
    make.member("tanuki/a", make.user("adev"), "developer")
    make.member("tanuki/b", make.user("bdev"), "developer")


def upload(client, repo, user, content=CONTENT):
    oid = hashlib.sha256(content).hexdigest()
    answer = batch(client, repo, "upload", [{"oid": oid, "size": len(content)}],
                   basic(user, PASSWORD)).get_json()["objects"][0]
    if "actions" not in answer:
        return answer, None
    action = answer["actions"]["upload"]
    put = client.put(relative(action["href"]), data=content, headers=action["header"])
    return answer, put


def test_anonymous_callers_are_asked_for_credentials_in_lfs_json(client, devs):
    response = batch(client, "tanuki/a", "download", [{"oid": OID, "size": 1}])
    assert response.status_code == 401
    assert response.headers["Content-Type"] == MEDIA
    assert response.headers["LFS-Authenticate"] == 'Basic realm="Gatehouse"'
    assert response.get_json() == {"message": "Credentials needed"}


@pytest.mark.parametrize("body, message", [
    ("not json", "not valid JSON"),
    ({"operation": "delete", "objects": [{"oid": OID, "size": 1}]}, "operation must be"),
    ({"operation": "upload", "objects": []}, "non-empty list"),
    ({"operation": "upload", "objects": [{"oid": "../../etc/passwd", "size": 1}]}, "64 lower-case"),
    ({"operation": "upload", "objects": [{"oid": OID, "size": -1}]}, "needs a size"),
    ({"operation": "upload", "hash_algo": "md5", "objects": [{"oid": OID, "size": 1}]}, "sha256"),
])
def test_malformed_batches_get_422_with_a_message(client, devs, body, message):
    response = client.post("/tanuki/a.git/info/lfs/objects/batch", headers=basic("adev", PASSWORD),
                           data=body if isinstance(body, str) else json.dumps(body),
                           content_type=MEDIA)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == MEDIA
    assert message in response.get_json()["message"]


def test_upload_download_and_verify_through_signed_transfers(app, client, devs):
    answer, put = upload(client, "tanuki/a", "adev")
    assert put.status_code == 200
    assert answer["actions"]["upload"]["header"]["Authorization"].startswith("Gatehouse-LFS ")
    verify = answer["actions"]["verify"]
    assert client.post(relative(verify["href"]), headers=verify["header"],
                       data=json.dumps({"oid": OID, "size": len(CONTENT)})).status_code == 200

    response = batch(client, "tanuki/a", "download", [{"oid": OID, "size": len(CONTENT)}],
                     basic("adev", PASSWORD))
    assert response.headers["Cache-Control"] == "no-store"
    action = response.get_json()["objects"][0]["actions"]["download"]
    got = client.get(relative(action["href"]), headers=action["header"])
    assert got.status_code == 200 and got.data == CONTENT
    # No grant, or a grant for another operation, reads nothing.
    assert client.get(relative(action["href"])).status_code == 403
    upload_grant = answer["actions"]["upload"]["header"]
    assert client.get(relative(action["href"]), headers=upload_grant).status_code == 403

    # Already held: a second upload batch asks for nothing.
    again, _ = upload(client, "tanuki/a", "adev")
    assert "actions" not in again


def test_a_grant_is_bound_to_project_oid_operation_and_time(app, ctx):
    header, lifetime = lfs.grant(7, OID, "download", now=1000)
    assert lfs.check_grant(header, OID, "download", now=1000 + lifetime) == 7
    other_oid = "0" * 64
    scheme, value = header.split(" ")
    project, op, expires, mac = value.split(".")
    for forged in (f"{scheme} 8.{op}.{expires}.{mac}", f"{scheme} {project}.upload.{expires}.{mac}",
                   f"{scheme} {project}.{op}.{int(expires) + 999}.{mac}", "Basic abc", ""):
        with pytest.raises(lfs.Forbidden):
            lfs.check_grant(forged, OID, "download", now=1000)
    with pytest.raises(lfs.Forbidden):
        lfs.check_grant(header, other_oid, "download", now=1000)
    with pytest.raises(lfs.Forbidden, match="expired"):
        lfs.check_grant(header, OID, "download", now=1000 + lifetime + 1)


def test_another_project_cannot_read_an_object_without_uploading_it(app, client, devs):
    upload(client, "tanuki/a", "adev")
    answer = batch(client, "tanuki/b", "download", [{"oid": OID, "size": len(CONTENT)}],
                   basic("bdev", PASSWORD)).get_json()["objects"][0]
    assert answer["error"] == {"code": 404, "message": "Object does not exist on the server"}
    assert "actions" not in answer

    # Uploading the same bytes proves possession: B links the one stored copy.
    answer, put = upload(client, "tanuki/b", "bdev")
    assert put.status_code == 200
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LfsObject)) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LfsObjectProject)) == 2
        assert package_storage.content_path(OID).read_bytes() == CONTENT


def test_bytes_that_do_not_match_the_oid_leave_no_row_and_no_file(app, client, devs):
    answer = batch(client, "tanuki/a", "upload", [{"oid": OID, "size": len(CONTENT)}],
                   basic("adev", PASSWORD)).get_json()["objects"][0]
    action = answer["actions"]["upload"]
    forged = b"x" * len(CONTENT)
    response = client.put(relative(action["href"]), data=forged, headers=action["header"])
    assert response.status_code == 422
    assert "does not match" in response.get_json()["message"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LfsObject)) == 0
        assert not package_storage.content_path(OID).exists()
        assert not package_storage.content_path(hashlib.sha256(forged).hexdigest()).exists()


def test_the_size_limit_refuses_in_the_batch_and_in_the_transfer(app, client, devs):
    app.config["MAX_LFS_OBJECT_SIZE"] = 10
    answer = batch(client, "tanuki/a", "upload", [{"oid": OID, "size": len(CONTENT)}],
                   basic("adev", PASSWORD)).get_json()["objects"][0]
    assert answer["error"]["code"] == 413 and "limit of 10 bytes" in answer["error"]["message"]
    with app.app_context():
        header, _ = lfs.grant(1, OID, "upload")
    response = client.put(f"/tanuki/a.git/gitlab-lfs/objects/{OID}/{len(CONTENT)}",
                          data=CONTENT, headers={"Authorization": header})
    assert response.status_code == 413
    assert response.headers["Content-Type"] == MEDIA


def test_deploy_tokens_download_but_never_upload_or_lock(app, client, make, devs):
    upload(client, "tanuki/a", "adev")
    _, username, secret = make.token("tanuki/a", ["read_repository"])
    down = batch(client, "tanuki/a", "download", [{"oid": OID, "size": len(CONTENT)}],
                 basic(username, secret))
    assert "download" in down.get_json()["objects"][0]["actions"]
    up = batch(client, "tanuki/a", "upload", [{"oid": OID, "size": 1}], basic(username, secret))
    assert up.status_code == 403
    assert "deploy tokens are read-only" in up.get_json()["message"]
    lock = client.post("/tanuki/a.git/info/lfs/locks", headers=basic(username, secret),
                       data=json.dumps({"path": "a.bin"}), content_type=MEDIA)
    assert lock.status_code == 403
    _, username, secret = make.token("tanuki/a", ["read_registry"], name="r")
    refused = batch(client, "tanuki/a", "download", [{"oid": OID, "size": 1}],
                    basic(username, secret))
    assert refused.status_code == 403
    assert "lacks the read_repository scope" in refused.get_json()["message"]


def test_lock_create_list_verify_and_unlock(client, make, devs):
    make.member("tanuki/a", make.user("other"), "developer")
    headers = {**basic("adev", PASSWORD), "Content-Type": MEDIA}
    created = client.post("/tanuki/a.git/info/lfs/locks", headers=headers,
                          data=json.dumps({"path": "art/hero.psd", "ref": {"name": "refs/heads/main"}}))
    assert created.status_code == 201
    lock = created.get_json()["lock"]
    assert lock["path"] == "art/hero.psd" and lock["owner"] == {"name": "adev"}
    conflict = client.post("/tanuki/a.git/info/lfs/locks", headers=headers,
                           data=json.dumps({"path": "art/hero.psd"}))
    assert conflict.status_code == 409 and conflict.get_json()["lock"]["id"] == lock["id"]

    listed = client.get("/tanuki/a.git/info/lfs/locks?path=art/hero.psd", headers=headers).get_json()
    assert [item["id"] for item in listed["locks"]] == [lock["id"]]
    other = {**basic("other", PASSWORD), "Content-Type": MEDIA}
    verify = client.post("/tanuki/a.git/info/lfs/locks/verify", headers=other, data="{}").get_json()
    assert verify["ours"] == [] and [item["id"] for item in verify["theirs"]] == [lock["id"]]

    refused = client.post(f"/tanuki/a.git/info/lfs/locks/{lock['id']}/unlock", headers=other,
                          data="{}")
    assert refused.status_code == 403 and "locked by adev" in refused.get_json()["message"]
    unlocked = client.post(f"/tanuki/a.git/info/lfs/locks/{lock['id']}/unlock", headers=headers,
                           data="{}")
    assert unlocked.status_code == 200 and unlocked.get_json()["lock"]["id"] == lock["id"]
    missing = client.post(f"/tanuki/a.git/info/lfs/locks/{lock['id']}/unlock", headers=headers,
                          data="{}")
    assert missing.status_code == 404 and missing.headers["Content-Type"] == MEDIA


def test_gc_keeps_lfs_objects(app, client, devs):
    upload(client, "tanuki/a", "adev")
    with app.app_context():
        removed = package_storage.gc(grace=-1)
        assert removed["content"] == 0
        assert package_storage.content_path(OID).exists()
