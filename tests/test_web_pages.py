"""Sign-in, the dashboard, group and project pages."""
import pytest

from .conftest import PASSWORD, csrf_from


def test_sign_in_and_out(client, make, auth):
    make.user("alice")
    response = auth.login("alice")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "alice" in client.get("/").get_data(as_text=True)
    page = client.get("/").get_data(as_text=True)
    response = client.post("/users/sign_out", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 302
    assert "Sign in" in client.get("/").get_data(as_text=True)


def test_sign_in_by_email(client, make, auth):
    make.user("alice")
    assert auth.login("alice@example.com").status_code == 302


def test_wrong_password_says_so_and_does_not_sign_in(client, make, auth):
    make.user("alice")
    response = auth.login("alice", "wrong-password")
    assert response.status_code == 422
    assert "Invalid username or password." in response.get_data(as_text=True)
    assert "Sign out" not in client.get("/").get_data(as_text=True)


def test_unknown_user_gets_the_same_message(client, auth):
    response = auth.login("nobody", PASSWORD)
    assert "Invalid username or password." in response.get_data(as_text=True)


def test_sign_in_without_csrf_is_refused(client, make):
    make.user("alice")
    response = client.post("/users/sign_in", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 400


@pytest.mark.parametrize("target, expected", [
    ("/tanuki", "/tanuki"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
    ("javascript:alert(1)", "/"),
])
def test_next_redirect_stays_on_site(client, make, target, expected):
    make.user("alice")
    page = client.get("/users/sign_in", query_string={"next": target}).get_data(as_text=True)
    response = client.post("/users/sign_in", query_string={"next": target}, data={
        "username": "alice", "password": PASSWORD, "csrf_token": csrf_from(page)})
    assert response.headers["Location"] == expected


def test_sign_out_by_link_does_not_sign_out(client, make, auth):
    # A GET (an <img> on another site, say) must not end the session.
    make.user("alice")
    auth.login("alice")
    assert client.get("/users/sign_out").status_code in (404, 405)
    assert "Sign out" in client.get("/").get_data(as_text=True)


def test_dashboard_lists_what_the_user_can_see(client, make, auth):
    make.project("tanuki/infra/deploy")
    make.project("other/secret")
    user = make.user()
    make.member("tanuki/infra", user, "reporter")
    auth.login(user.username)
    html = client.get("/").get_data(as_text=True)
    assert "tanuki/infra/deploy" in html and "tanuki/infra" in html
    assert "other/secret" not in html


def test_dashboard_empty_states(client):
    html = client.get("/").get_data(as_text=True)
    assert "No projects to show yet." in html and "No groups to show" in html


def test_anonymous_sees_public_projects_only(client, make):
    make.project("tanuki/website", visibility="public")
    make.project("tanuki/secret")
    html = client.get("/").get_data(as_text=True)
    assert "tanuki/website" in html and "tanuki/secret" not in html
    assert client.get("/tanuki/website").status_code == 200
    assert client.get("/tanuki/secret").status_code == 404


def test_hidden_and_unknown_projects_answer_the_same(client, make, auth):
    make.project("tanuki/secret")
    make.user("alice")
    auth.login("alice")
    hidden, unknown = client.get("/tanuki/secret"), client.get("/tanuki/nothing")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.get_data() == unknown.get_data()


def test_project_page_links_settings_for_maintainers_only(client, make, auth):
    make.project("tanuki/app")
    boss, dev = make.user("boss"), make.user("dev")
    make.member("tanuki", boss, "maintainer")
    make.member("tanuki", dev, "developer")
    auth.login("dev")
    assert "Settings › Repository" not in client.get("/tanuki/app").get_data(as_text=True)
    client.post("/users/sign_out", data={"csrf_token": csrf_from(client.get("/").get_data(as_text=True))})
    auth.login("boss")
    assert "Settings › Repository" in client.get("/tanuki/app").get_data(as_text=True)


def test_group_page_lists_subgroups_and_projects(client, make, auth):
    make.project("tanuki/infra/deploy")
    make.project("tanuki/app")
    user = make.user()
    make.member("tanuki", user, "guest")
    auth.login(user.username)
    html = client.get("/groups/tanuki").get_data(as_text=True)
    assert "infra" in html and "app" in html
    assert client.get("/tanuki").status_code == 302  # /<group> leads to the group page


def test_unknown_group_is_404(client):
    assert client.get("/groups/nope").status_code == 404


def test_health(client):
    response = client.get("/-/health")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"


def test_dashboard_pages_long_lists(client, make):
    for i in range(25):
        make.project(f"pub/p{i:02d}", visibility="public")
    first = client.get("/").get_data(as_text=True)
    assert "pub/p00" in first and "pub/p20" not in first and "Page 1 of 2" in first
    second = client.get("/?page=2").get_data(as_text=True)
    assert "pub/p20" in second and "pub/p00" not in second
    assert "Page 2 of 2" in client.get("/?page=99").get_data(as_text=True)


def test_breadcrumbs_name_the_groups_and_the_project_as_their_pages_do(client, make, auth):
    make.group("tanuki", name="Tanuki")
    make.group("tanuki/infra", name="Infra")
    make.project("tanuki/infra/deploy", name="Deploy service", visibility="public")
    html = client.get("/tanuki/infra/deploy").get_data(as_text=True)
    crumbs = html[html.index('class="breadcrumbs"'):].split("</nav>")[0]
    assert '<a href="/groups/tanuki">Tanuki</a> / <a href="/groups/tanuki/infra">Infra</a> / ' in crumbs
    assert '<a href="/tanuki/infra/deploy">Deploy service</a>' in crumbs
    assert "<h1>Deploy service " in html
