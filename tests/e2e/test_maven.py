"""Maven 3.8 (Debian's `maven`) deploying to and resolving from Gatehouse, offline.

Maven Central cannot be reached here: the plugins come from a copy of the machine's
~/.m2/repository used as the test's localRepository, their versions pinned in the poms,
and the consumer resolves our artifacts only from Gatehouse (they are removed from the
local repository before it runs).
"""
import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import requests

from ..support import require_binary

GROUP_ID = "org.gatehouse.e2e"
PLUGINS = """
  <build><plugins>
    <plugin><artifactId>maven-resources-plugin</artifactId><version>3.3.1</version></plugin>
    <plugin><artifactId>maven-compiler-plugin</artifactId><version>3.13.0</version></plugin>
    <plugin><artifactId>maven-jar-plugin</artifactId><version>3.4.1</version></plugin>
    <plugin><artifactId>maven-install-plugin</artifactId><version>3.1.2</version></plugin>
    <plugin><artifactId>maven-deploy-plugin</artifactId><version>3.1.2</version></plugin>
    <plugin><artifactId>maven-surefire-plugin</artifactId><version>3.5.4</version>
      <executions><execution><id>default-test</id><phase>none</phase></execution></executions>
    </plugin>
  </plugins></build>"""
PROPERTIES = """
  <properties>
    <maven.compiler.release>17</maven.compiler.release>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>"""


@pytest.fixture(scope="session")
def m2_repository(tmp_path_factory):
    """A private copy of the machine's Maven repository (plugins only, no network)."""
    require_binary("mvn", "apt-get install maven")
    source = Path.home() / ".m2" / "repository"
    if not source.is_dir():
        pytest.fail(f"{source} is missing: the offline Maven tests need the image's plugins")
    target = tmp_path_factory.mktemp("m2") / "repository"
    shutil.copytree(source, target, symlinks=True)
    return target


class Maven:
    def __init__(self, repository: Path, home: Path):
        self.repository, self.home = repository, home
        home.mkdir(parents=True, exist_ok=True)

    def settings(self, name: str, server: str) -> Path:
        path = self.home / f"settings-{name}.xml"
        path.write_text(f"""<settings>
  <localRepository>{escape(str(self.repository))}</localRepository>
  <interactiveMode>false</interactiveMode>
  <servers><server><id>gatehouse</id>{server}</server></servers>
</settings>
""")
        return path

    def header_settings(self, name: str, header: str, secret: str) -> Path:
        return self.settings(name, f"""
    <configuration><httpHeaders><property>
      <name>{header}</name><value>{escape(secret)}</value>
    </property></httpHeaders></configuration>""")

    def basic_settings(self, name: str, username: str, secret: str) -> Path:
        return self.settings(name, f"<username>{escape(username)}</username>"
                                   f"<password>{escape(secret)}</password>")

    def run(self, project: Path, settings: Path, *goals: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, HOME=str(self.home), MAVEN_OPTS="-Xmx256m")
        env.pop("MAVEN_ARGS", None)
        return subprocess.run(["mvn", "-B", "-e", "-s", str(settings), *goals], cwd=project,
                              env=env, capture_output=True, text=True, timeout=300)

    def forget(self, group_id: str) -> None:
        """Drop our artifacts from the local repository: the next build must download."""
        shutil.rmtree(self.repository / group_id.replace(".", "/"), ignore_errors=True)


def library(root: Path, version: str, marker: str, repository_url: str) -> Path:
    project = root / "hello"
    source = project / "src/main/java/org/gatehouse/e2e"
    source.mkdir(parents=True, exist_ok=True)
    (source / "Hello.java").write_text(
        "package org.gatehouse.e2e;\npublic class Hello {\n"
        "  public static String greet() { return \"hello\"; }\n}\n")
    resources = project / "src/main/resources"
    resources.mkdir(parents=True, exist_ok=True)
    (resources / "build.txt").write_text(marker)
    (project / "pom.xml").write_text(f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>{GROUP_ID}</groupId><artifactId>hello</artifactId><version>{version}</version>
  {PROPERTIES}
  <distributionManagement>
    <repository><id>gatehouse</id><url>{repository_url}</url></repository>
    <snapshotRepository><id>gatehouse</id><url>{repository_url}</url></snapshotRepository>
  </distributionManagement>
  {PLUGINS}
</project>
""")
    return project


def consumer(root: Path, name: str, dependencies: list[str], repository_url: str) -> Path:
    project = root / name
    source = project / "src/main/java/app"
    source.mkdir(parents=True, exist_ok=True)
    (source / "App.java").write_text(
        "package app;\npublic class App {\n  public static void main(String[] a) {\n"
        "    System.out.println(org.gatehouse.e2e.Hello.greet());\n  }\n}\n")
    deps = "".join(f"<dependency><groupId>{GROUP_ID}</groupId><artifactId>hello</artifactId>"
                   f"<version>{v}</version></dependency>" for v in dependencies)
    (project / "pom.xml").write_text(f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>app</groupId><artifactId>{name}</artifactId><version>1.0</version>
  {PROPERTIES}
  <repositories>
    <repository><id>gatehouse</id><url>{repository_url}</url>
      <snapshots><enabled>true</enabled><updatePolicy>always</updatePolicy></snapshots>
    </repository>
  </repositories>
  <dependencies>{deps}</dependencies>
  {PLUGINS}
</project>
""")
    return project


def jar_marker(jar: Path) -> str:
    with zipfile.ZipFile(jar) as zf:
        return zf.read("build.txt").decode()


def test_mvn_deploys_releases_and_snapshots_and_consumers_resolve_them(
        live_server, make, m2_repository, tmp_path):
    project = make.project("tanuki/infra/hello")
    _, wuser, wsecret = make.token("tanuki/infra/hello", ["write_package_registry"], name="w")
    _, _, rsecret = make.token("tanuki/infra/hello", ["read_package_registry"], name="r")
    _, guser, gsecret = make.token("tanuki", ["read_package_registry"], name="group")
    maven = Maven(m2_repository, tmp_path / "maven-home")
    maven.forget(GROUP_ID)
    project_url = f"{live_server.url}/api/v4/projects/{project.id}/packages/maven"
    header = maven.header_settings("deploy-header", "Deploy-Token", wsecret)
    basic = maven.basic_settings("deploy-basic", wuser, wsecret)

    # A release with the header form, two SNAPSHOT builds with basic auth.
    release = maven.run(library(tmp_path / "rel", "1.0.0", "release", project_url), header,
                        "deploy")
    assert release.returncode == 0, release.stdout[-4000:]
    for build in ("snapshot-1", "snapshot-2"):
        snap = maven.run(library(tmp_path / build, "1.1-SNAPSHOT", build, project_url), basic,
                         "deploy")
        assert snap.returncode == 0, snap.stdout[-4000:]

    listing = requests.get(f"{project_url}/org/gatehouse/e2e/hello/1.1-SNAPSHOT/maven-metadata.xml",
                           headers={"Deploy-Token": rsecret}, timeout=30)
    assert listing.status_code == 200
    assert "<buildNumber>2</buildNumber>" in listing.text

    # A token that may only read is refused with a 403 Maven shows, a wrong one 401.
    read_only = maven.header_settings("deploy-read-only", "Deploy-Token", rsecret)
    refused = maven.run(library(tmp_path / "ro", "1.0.1", "ro", project_url), read_only, "deploy")
    assert refused.returncode != 0 and "403" in refused.stdout, refused.stdout[-3000:]
    assert "cannot write to this package registry" in refused.stdout  # the reason phrase
    wrong = maven.header_settings("deploy-wrong", "Deploy-Token", "gldt-wrongwrongwrongwron")
    failed = maven.run(library(tmp_path / "wrong", "1.0.2", "wrong", project_url), wrong, "deploy")
    assert failed.returncode != 0 and "401" in failed.stdout, failed.stdout[-3000:]

    # Consumers resolve through the group (header form) and the instance (basic form).
    levels = {
        "group": (f"{live_server.url}/api/v4/groups/tanuki/-/packages/maven",
                  maven.header_settings("group", "Deploy-Token", gsecret)),
        "instance": (f"{live_server.url}/api/v4/packages/maven",
                     maven.basic_settings("instance", guser, gsecret)),
    }
    for level, (url, settings) in levels.items():
        for version, marker in (("1.0.0", "release"), ("1.1-SNAPSHOT", "snapshot-2")):
            maven.forget(GROUP_ID)
            app = consumer(tmp_path / level, f"app-{version}", [version], url)
            built = maven.run(app, settings, "compile")
            assert built.returncode == 0, f"{level} {version}\n" + built.stdout[-4000:]
            jars = list((m2_repository / "org/gatehouse/e2e/hello" / version).glob("hello-*.jar"))
            assert jars, f"{level} {version}: nothing resolved"
            assert {jar_marker(j) for j in jars} == {marker}, level

    # A checksum that does not match the stored file is refused.
    jar = f"{project_url}/org/gatehouse/e2e/hello/1.0.0/hello-1.0.0.jar"
    stored = requests.get(jar, headers={"Deploy-Token": rsecret}, timeout=30)
    assert stored.status_code == 200
    good = requests.put(jar + ".sha1", data=hashlib.sha1(stored.content).hexdigest(),
                        headers={"Deploy-Token": wsecret}, timeout=30)
    assert good.status_code == 200
    bad = requests.put(jar + ".sha1", data="0" * 40, headers={"Deploy-Token": wsecret}, timeout=30)
    assert bad.status_code == 400 and "Checksum mismatch" in bad.reason
