"""The audit trail of deploy tokens: GitLab's audit events API, and the page with its CSV."""
import csv
import io

import pytest

from .conftest import csrf_from

PROJECT = "tanuki/awesome_project"
ENCODED = "tanuki%2Fawesome_project"


@pytest.fixture
def trail(app, client, make):
    """maria (maintainer) creates, rotates and revokes tokens; another project has one too."""
    make.project(PROJECT)
    make.project("other/thing")
    make.user("maria")
    make.member("tanuki", "maria", "maintainer")
    key = make.pat("maria")
    h = {"PRIVATE-TOKEN": key}
    first = client.post(f"/api/v4/projects/{ENCODED}/deploy_tokens", headers=h,
                        json={"name": "=cmd()", "scopes": ["read_repository"]}).get_json()["id"]
    client.post(f"/api/v4/projects/{ENCODED}/deploy_tokens/{first}/rotate", headers=h)
    second = client.post(f"/api/v4/projects/{ENCODED}/deploy_tokens", headers=h,
                         json={"name": "two", "scopes": ["read_repository"]}).get_json()["id"]
    client.delete(f"/api/v4/projects/{ENCODED}/deploy_tokens/{second}", headers=h)
    make.token("other/thing", name="elsewhere")
    return key, first, second


def test_project_audit_events_in_gitlabs_shape(app, client, trail):
    key, first, second = trail
    response = client.get(f"/api/v4/projects/{ENCODED}/audit_events",
                          headers={"PRIVATE-TOKEN": key})
    assert response.status_code == 200 and response.headers["X-Total"] == "4"
    events = response.get_json()
    assert [e["event_name"] for e in events] == [
        "deploy_token_destroyed", "deploy_token_created", "deploy_token_rotated",
        "deploy_token_created"]
    event = events[-1]
    assert {"id", "author_id", "entity_id", "entity_type", "details", "created_at"} <= set(event)
    assert event["entity_type"] == "Project"
    assert event["details"]["author_name"] == "maria"
    assert event["details"]["target_id"] == first
    assert event["details"]["entity_path"] == PROJECT
    only = client.get(f"/api/v4/projects/{ENCODED}/audit_events?token_id={second}",
                      headers={"PRIVATE-TOKEN": key}).get_json()
    assert [e["event_name"] for e in only] == ["deploy_token_destroyed", "deploy_token_created"]
    none = client.get(f"/api/v4/projects/{ENCODED}/audit_events?created_after=2999-01-01",
                      headers={"PRIVATE-TOKEN": key}).get_json()
    assert none == []
    bad = client.get(f"/api/v4/projects/{ENCODED}/audit_events?created_before=yesterday",
                     headers={"PRIVATE-TOKEN": key})
    assert bad.status_code == 400 and bad.get_json() == {"error": "created_before is invalid"}


def test_developers_get_403_and_only_admins_see_the_instance(app, client, make, trail):
    make.user("dev")
    make.member("tanuki", "dev", "developer")
    dev = {"PRIVATE-TOKEN": make.pat("dev")}
    assert client.get(f"/api/v4/projects/{ENCODED}/audit_events", headers=dev).status_code == 403
    assert client.get("/api/v4/audit_events", headers=dev).status_code == 403
    make.user("root", admin=True)
    everything = client.get("/api/v4/audit_events", headers={"PRIVATE-TOKEN": make.pat("root")})
    assert everything.status_code == 200
    assert int(everything.headers["X-Total"]) >= 5  # the other project's token too


def test_the_page_filters_and_exports_csv(app, client, auth, trail):
    _, first, _ = trail
    auth.login("maria")
    page = client.get(f"/{PROJECT}/-/audit_events")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "deploy_token_rotated" in html
    assert "elsewhere" not in html
    filtered = client.get(f"/{PROJECT}/-/audit_events?token_id={first}").get_data(as_text=True)
    assert "deploy_token_destroyed" not in filtered
    assert client.get(f"/{PROJECT}/-/audit_events?from=soon").status_code == 400
    exported = client.get(f"/{PROJECT}/-/audit_events?format=csv&token_id={first}")
    assert exported.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.get_data(as_text=True))))
    assert rows[0][:3] == ["id", "created_at", "event"]
    assert [r[2] for r in rows[1:]] == ["deploy_token_rotated", "deploy_token_created"]
    assert rows[1][6] == "'=cmd()"  # never a spreadsheet formula


def test_outsiders_get_404(app, client, make, auth, trail):
    make.user("eve")
    auth.login("eve")
    assert client.get(f"/{PROJECT}/-/audit_events").status_code == 404
    assert client.get(f"/{PROJECT}/-/settings/webhooks").status_code == 404


def test_webhooks_page_adds_refuses_and_deletes(app, client, make, auth, trail):
    auth.login("maria")
    url = "/groups/tanuki/-/settings/webhooks"
    page = client.get(url).get_data(as_text=True)
    bad = client.post(url, data={"csrf_token": csrf_from(page), "url": "http://10.0.0.1/x",
                                 "deploy_token_events": "y"})
    assert bad.status_code == 422 and "local or private address" in bad.get_data(as_text=True)
    app.config["WEBHOOK_ALLOW_LOCAL"] = True
    good = client.post(url, data={"csrf_token": csrf_from(page), "url": "http://127.0.0.1:9/x",
                                  "token": "s", "deploy_token_events": "y"})
    assert good.status_code == 302
    html = client.get(url).get_data(as_text=True)
    assert "http://127.0.0.1:9/x" in html and "Nothing sent yet" in html
    hook_id = html.split('id="webhook-', 1)[1].split('"', 1)[0]
    gone = client.post(f"/groups/tanuki/-/hooks/{hook_id}/delete",
                       data={"csrf_token": csrf_from(html)})
    assert gone.status_code == 302
    assert "has no webhooks" in client.get(url).get_data(as_text=True)
