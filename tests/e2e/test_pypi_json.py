"""pip reads the PEP 691 JSON index: the server's log shows what it negotiated."""
import re

from ..support import require_binary
from .test_packages import client_env, pip_install, twine_upload, with_credentials, write_wheel


def test_pip_installs_through_the_json_simple_api(live_server, make, tmp_path):
    require_binary("twine")
    project = make.project("tanuki/awesome_project")
    _, wuser, wsecret = make.token("tanuki/awesome_project", ["write_package_registry"], name="w")
    env = client_env(tmp_path)
    assert twine_upload(live_server, project.id, wuser, wsecret, write_wheel(tmp_path),
                        env).returncode == 0
    index = f"{live_server.url}/api/v4/projects/{project.id}/packages/pypi/simple"
    installed = pip_install(with_credentials(index, wuser, wsecret), tmp_path / "site", env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (tmp_path / "site" / "demo_pkg" / "__init__.py").exists()
    page = re.search(rf'"GET /api/v4/projects/{project.id}/packages/pypi/simple/demo-pkg/ HTTP/1.1" '
                     r'200 .*"([^"]*)"$', live_server.log.read_text(), re.M)
    assert page, live_server.log.read_text()[-2000:]
    assert page.group(1) == "application/vnd.pypi.simple.v1+json"
    # PEP 658: pip read the wheel's core metadata from the URL the index announced.
    assert re.search(r'"GET /api/v4/projects/\d+/packages/pypi/files/[0-9a-f]{64}/'
                     r'demo_pkg-0\.1\.0-py3-none-any\.whl\.metadata HTTP/1\.1" 200 ',
                     live_server.log.read_text()), live_server.log.read_text()[-2000:]
