"""Maven at GitLab's URLs through the Flask client: uploads, checksums, metadata, doors."""
import base64
import hashlib
import xml.etree.ElementTree as ET

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import Package, PackageFile, Project

BASE = "/api/v4/projects/{ref}/packages/maven/com/example/hello"


def url(ref, version, file):
    return f"{BASE.format(ref=ref)}/{version}/{file}"


def basic(username, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()}


@pytest.fixture
def project(make):
    return make.project("tanuki/awesome_project")


@pytest.fixture
def writer(make, project):
    _, username, secret = make.token("tanuki/awesome_project", ["write_package_registry"], name="w")
    return username, secret


def put(client, path, body, secret):
    return client.put(path, data=body, headers={"Deploy-Token": secret})


def test_a_release_uploads_with_checksums_and_downloads(client, project, writer):
    _, secret = writer
    jar = b"PK\x03\x04 a jar" * 100
    assert put(client, url(project.id, "1.0.0", "hello-1.0.0.jar"), jar, secret).status_code == 200
    for algorithm in ("md5", "sha1", "sha256", "sha512"):
        digest = hashlib.new(algorithm, jar).hexdigest()
        ok = put(client, url(project.id, "1.0.0", f"hello-1.0.0.jar.{algorithm}"), digest, secret)
        assert ok.status_code == 200, ok.get_data(as_text=True)
        got = client.get(url(project.id, "1.0.0", f"hello-1.0.0.jar.{algorithm}"),
                         headers={"Deploy-Token": secret})
        assert got.get_data(as_text=True) == digest

    got = client.get(url(project.id, "1.0.0", "hello-1.0.0.jar"), headers={"Deploy-Token": secret})
    assert got.status_code == 200 and got.data == jar
    head = client.head(url(project.id, "1.0.0", "hello-1.0.0.jar"), headers={"Deploy-Token": secret})
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(jar))
    missing = client.get(url(project.id, "1.0.0", "hello-1.0.0-sources.jar"),
                         headers={"Deploy-Token": secret})
    assert missing.status_code == 404


def test_a_checksum_that_does_not_match_is_refused(app, client, project, writer):
    _, secret = writer
    put(client, url(project.id, "1.0.0", "hello-1.0.0.jar"), b"jar bytes", secret)
    wrong = put(client, url(project.id, "1.0.0", "hello-1.0.0.jar.sha1"), "0" * 40, secret)
    assert wrong.status_code == 400
    assert "Checksum mismatch" in wrong.status and "Checksum mismatch" in wrong.get_data(as_text=True)
    odd = put(client, url(project.id, "1.0.0", "hello-1.0.0.jar.sha1"), "é\x00".encode(), secret)
    assert odd.status_code == 400
    orphan = put(client, url(project.id, "1.0.0", "hello-1.0.0.pom.sha1"), "0" * 40, secret)
    assert orphan.status_code == 404


def test_artifact_metadata_lists_versions_and_the_latest_release(client, project, writer):
    _, secret = writer
    for version in ("1.0.0", "1.1.0", "2.0-SNAPSHOT"):
        file = (f"hello-{version}.pom" if "SNAPSHOT" not in version
                else "hello-2.0-20261125.101010-1.pom")
        assert put(client, url(project.id, version, file), b"<project/>", secret).status_code == 200
    got = client.get(f"{BASE.format(ref=project.id)}/maven-metadata.xml",
                     headers={"Deploy-Token": secret})
    assert got.status_code == 200 and got.mimetype == "application/xml"
    root = ET.fromstring(got.data)
    assert root.findtext("groupId") == "com.example" and root.findtext("artifactId") == "hello"
    assert [v.text for v in root.iter("version")] == ["1.0.0", "1.1.0", "2.0-SNAPSHOT"]
    assert root.findtext("versioning/release") == "1.1.0"
    assert root.findtext("versioning/latest") == "2.0-SNAPSHOT"
    sha1 = client.get(f"{BASE.format(ref=project.id)}/maven-metadata.xml.sha1",
                      headers={"Deploy-Token": secret})
    assert sha1.get_data(as_text=True) == hashlib.sha1(got.data).hexdigest()
    # Maven uploads its own merged copy; it is accepted and the generated one stays.
    assert put(client, f"{BASE.format(ref=project.id)}/maven-metadata.xml", b"<metadata/>",
               secret).status_code == 200


def test_snapshot_metadata_names_the_newest_build_of_each_file(client, project, writer):
    _, secret = writer
    version = "2.0-SNAPSHOT"
    assert client.get(url(project.id, version, "maven-metadata.xml"),
                      headers={"Deploy-Token": secret}).status_code == 404
    for stamp, build in (("20261125.101010", 1), ("20261125.111111", 2)):
        for suffix in (".jar", ".pom", "-sources.jar"):
            file = f"hello-2.0-{stamp}-{build}{suffix}"
            assert put(client, url(project.id, version, file), file.encode(), secret).status_code == 200
    got = client.get(url(project.id, version, "maven-metadata.xml"), headers={"Deploy-Token": secret})
    root = ET.fromstring(got.data)
    assert root.findtext("version") == version
    assert root.findtext("versioning/snapshot/timestamp") == "20261125.111111"
    assert root.findtext("versioning/snapshot/buildNumber") == "2"
    found = {(sv.findtext("classifier") or "", sv.findtext("extension")): sv.findtext("value")
             for sv in root.iter("snapshotVersion")}
    assert found == {("", "jar"): "2.0-20261125.111111-2", ("", "pom"): "2.0-20261125.111111-2",
                     ("sources", "jar"): "2.0-20261125.111111-2"}


def test_duplicate_releases_follow_the_project_setting(app, client, project, writer):
    _, secret = writer
    path = url(project.id, "1.0.0", "hello-1.0.0.jar")
    assert put(client, path, b"one", secret).status_code == 200
    assert put(client, path, b"two", secret).status_code == 200  # GitLab's default: allowed
    assert client.get(path, headers={"Deploy-Token": secret}).data == b"two"
    with app.app_context():
        db.session.get(Project, project.id).maven_duplicates_allowed = False
        db.session.commit()
    refused = put(client, path, b"three", secret)
    assert refused.status_code == 400 and "Duplicate package is not allowed" in refused.status
    snapshot = url(project.id, "1.1-SNAPSHOT", "hello-1.1-20261125.101010-1.jar")
    assert put(client, snapshot, b"a", secret).status_code == 200
    assert put(client, snapshot, b"b", secret).status_code == 200  # SNAPSHOTs always may
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(PackageFile.id))) == 4


def test_credentials_kinds_and_answers(client, make, project, writer):
    username, secret = writer
    _, rname, rsecret = make.token("tanuki/awesome_project", ["read_package_registry"], name="r")
    user = make.user("dev")
    make.member("tanuki/awesome_project", user, "developer")
    pat = make.pat(user, ["api"])
    path = url(project.id, "1.0.0", "hello-1.0.0.jar")
    assert client.put(path, data=b"x", headers=basic(username, secret)).status_code == 200
    assert client.put(path, data=b"x", headers={"Private-Token": pat}).status_code == 200

    anonymous = client.get(path)
    assert anonymous.status_code == 401 and "Basic" in anonymous.headers["WWW-Authenticate"]
    wrong = client.get(path, headers={"Deploy-Token": "gldt-wrongwrongwrongwron"})
    assert wrong.status_code == 401 and "WWW-Authenticate" in wrong.headers
    wrong_user = client.get(path, headers=basic("someone-else", secret))
    assert wrong_user.status_code == 401
    job = client.get(path, headers={"Job-Token": "64_abcdef"})
    assert job.status_code == 401 and "WWW-Authenticate" not in job.headers
    assert "job tokens are not supported" in job.get_data(as_text=True)
    read_only = client.put(path, data=b"x", headers={"Deploy-Token": rsecret})
    assert read_only.status_code == 403 and "WWW-Authenticate" not in read_only.headers
    assert "cannot write" in read_only.status
    assert client.get(path, headers=basic(rname, rsecret)).status_code == 200


def test_bad_paths_are_400_and_store_nothing(app, client, project, writer):
    _, secret = writer
    for path in (f"{BASE.format(ref=project.id)}/1.0.0/other-1.0.0.jar",
                 f"/api/v4/projects/{project.id}/packages/maven/hello/1.0.0/hello-1.0.0.jar",
                 f"{BASE.format(ref=project.id)}/1.0.0/..hello.jar"):
        assert put(client, path, b"x", secret).status_code == 400, path
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Package.id))) == 0


def test_group_and_instance_levels_find_packages_the_credentials_can_read(client, make, writer):
    project = make.project("tanuki/infra/lib")
    make.project("other/secret")
    _, _, lib_secret = make.token("tanuki/infra/lib", ["write_package_registry"], name="lw")
    _, _, other_secret = make.token("other/secret", ["write_package_registry"], name="ow")
    _, guser, gsecret = make.token("tanuki", ["read_package_registry"], name="group")
    lib = "/api/v4/projects/{ref}/packages/maven/com/example/lib/1.0/lib-1.0.jar"
    assert put(client, lib.format(ref=project.id), b"lib", lib_secret).status_code == 200
    hidden = "/api/v4/projects/other%2Fsecret/packages/maven/com/example/hidden/1.0/hidden-1.0.jar"
    assert put(client, hidden, b"no", other_secret).status_code == 200

    for prefix in ("/api/v4/groups/tanuki/-/packages/maven", "/api/v4/packages/maven"):
        got = client.get(f"{prefix}/com/example/lib/1.0/lib-1.0.jar", headers={"Deploy-Token": gsecret})
        assert got.status_code == 200 and got.data == b"lib", prefix
        meta = client.get(f"{prefix}/com/example/lib/maven-metadata.xml", headers=basic(guser, gsecret))
        assert meta.status_code == 200 and b"<version>1.0</version>" in meta.data
        other = client.get(f"{prefix}/com/example/hidden/1.0/hidden-1.0.jar",
                           headers={"Deploy-Token": gsecret})
        assert other.status_code == 404, prefix
        assert client.put(f"{prefix}/com/example/lib/1.0/lib-1.0.jar", data=b"x",
                          headers={"Deploy-Token": gsecret}).status_code == 405
    challenge = client.get("/api/v4/packages/maven/com/example/lib/1.0/lib-1.0.jar")
    assert challenge.status_code == 401 and "WWW-Authenticate" in challenge.headers


def test_the_cli_sets_the_duplicates_setting(app, client, project, writer):
    _, secret = writer
    runner = app.test_cli_runner()
    result = runner.invoke(args=["packages", "maven-duplicates", "tanuki/awesome_project", "refuse"])
    assert result.exit_code == 0, result.output
    path = url(project.id, "1.0.0", "hello-1.0.0.jar")
    assert put(client, path, b"one", secret).status_code == 200
    assert put(client, path, b"two", secret).status_code == 400
    assert runner.invoke(args=["packages", "maven-duplicates", "tanuki/awesome_project",
                               "allow"]).exit_code == 0
    assert put(client, path, b"two", secret).status_code == 200
    missing = runner.invoke(args=["packages", "maven-duplicates", "no/such", "allow"])
    assert missing.exit_code == 1 and "does not exist" in missing.output
