"""Per-token address allowlists: checked inside the one chain, so every door refuses alike."""
import base64
import ipaddress

import pytest
import sqlalchemy as sa

from webapp import create_app
from webapp.extensions import db
from webapp.models import AuditEvent, AuthFailure, DeployToken, PersonalAccessToken, RunnerToken
from webapp.services import deploy_tokens
from webapp.services.secret_tokens import parse_allowed_ips

from .conftest import csrf_from, form_fields
from .test_front_door import DOORS, runner, world  # noqa: F401 (fixtures)

TOKEN_DOORS = [door for door in DOORS if door.name != "sign-in"]
PROJECT = "tanuki/p"


@pytest.mark.parametrize("raw, stored", [
    ("127.0.0.1", "127.0.0.1/32"),
    (["10.0.0.0/8", "2001:db8::/32"], "10.0.0.0/8,2001:db8::/32"),
    ("192.0.2.7/24, ::1  198.51.100.1", "192.0.2.0/24,::1/128,198.51.100.1/32"),
    ("10.0.0.1,10.0.0.1", "10.0.0.1/32"),
    ("", None), ([], None), (None, None),
])
def test_allowlists_are_normalised(raw, stored):
    assert parse_allowed_ips(raw) == (stored, {})


@pytest.mark.parametrize("raw", ["10.0.0.0/33", "not-an-ip", "300.1.1.1", "fe80::1/129",
                                 ["10.0.0.1", 5], 7])
def test_bad_allowlists_are_field_errors(raw):
    stored, errors = parse_allowed_ips(raw)
    assert stored is None and errors["allowed_ips"]


def _allow_only(app, networks: str) -> None:
    with app.app_context():
        for model in (DeployToken, PersonalAccessToken, RunnerToken):
            db.session.execute(sa.update(model).values(allowed_ips=networks))
        db.session.commit()


def _failures(app, ip) -> int:
    with app.app_context():
        row = db.session.get(AuthFailure, ip)
        return row.failures if row else 0


@pytest.mark.parametrize("door", TOKEN_DOORS, ids=lambda d: d.name)
def test_every_door_refuses_a_token_outside_its_allowlist_and_counts_it(app, client, world,
                                                                        door):
    _allow_only(app, "127.0.0.1/32,2001:db8::/32")
    assert door.call(app, client, world, "127.0.0.1", True).status_code == door.ok
    assert door.call(app, client, world, "2001:db8::5", True).status_code == door.ok
    refused = door.call(app, client, world, "127.0.0.2", True)
    assert refused.status_code == 403
    assert "not allowed from this address (127.0.0.2)" in refused.get_data(as_text=True)
    assert _failures(app, "127.0.0.2") == 1
    with app.app_context():
        [event] = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.action.like("%_address_refused")))
        assert event.ip == "127.0.0.2"


def test_ipv4_mapped_ipv6_client_matches_an_ipv4_entry(app, make):
    make.project(PROJECT)
    token_id, _, _ = make.token(PROJECT)
    _allow_only(app, "192.0.2.0/24")
    with app.app_context():
        token = db.session.get(DeployToken, token_id)
        assert token.allows_address("::ffff:192.0.2.9")
        assert not token.allows_address("::ffff:192.0.3.9")
        assert not token.allows_address(None)


def test_trusted_proxy_forwarded_address_is_the_one_checked(app, client, world):
    # The proxy setting is read by the factory: an app of its own behind one proxy.
    proxied = create_app({**app.config, "TRUSTED_PROXIES": 1})
    _allow_only(app, "203.0.113.0/24")
    git = [d for d in DOORS if d.name == "git"][0]
    behind = proxied.test_client()
    ok = behind.get(f"/{PROJECT}.git/info/refs?service=git-upload-pack",
                    headers={**_basic(*world.deploy), "X-Forwarded-For": "203.0.113.4"},
                    environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert ok.status_code == 200
    refused = behind.get(f"/{PROJECT}.git/info/refs?service=git-upload-pack",
                         headers={**_basic(*world.deploy), "X-Forwarded-For": "198.51.100.4"},
                         environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert refused.status_code == 403 and b"198.51.100.4" in refused.data
    # Without a trusted proxy, a client cannot claim an allowed address itself.
    assert git.call(app, client, world, "198.51.100.4", True).status_code == 403


def _basic(username, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def test_api_takes_an_array_or_a_comma_separated_string(app, client, make):
    make.project(PROJECT)
    make.user("maria")
    make.member("tanuki", "maria", "maintainer")
    key = make.pat("maria")
    url = "/api/v4/projects/tanuki%2Fp/deploy_tokens"
    made = client.post(url, headers={"PRIVATE-TOKEN": key}, json={
        "name": "a", "scopes": ["read_repository"], "allowed_ips": ["10.1.0.0/16", "::1"]})
    assert made.status_code == 201
    assert made.get_json()["allowed_ips"] == ["10.1.0.0/16", "::1/128"]
    made = client.post(url, headers={"PRIVATE-TOKEN": key},
                       data={"name": "b", "scopes": "read_repository",
                             "allowed_ips": "10.2.0.1, 10.3.0.0/24"})
    assert made.get_json()["allowed_ips"] == ["10.2.0.1/32", "10.3.0.0/24"]
    listed = client.get(url, headers={"PRIVATE-TOKEN": key}).get_json()
    assert [t["allowed_ips"] for t in listed] == [["10.1.0.0/16", "::1/128"],
                                                  ["10.2.0.1/32", "10.3.0.0/24"]]


def test_an_invalid_cidr_is_a_field_error_and_creates_nothing(app, client, make):
    make.project(PROJECT)
    make.user("maria")
    make.member("tanuki", "maria", "maintainer")
    key = make.pat("maria")
    response = client.post("/api/v4/projects/tanuki%2Fp/deploy_tokens",
                           headers={"PRIVATE-TOKEN": key},
                           json={"name": "a", "scopes": ["read_repository"],
                                 "allowed_ips": "10.0.0.0/33"})
    assert response.status_code == 400
    assert "10.0.0.0/33 is not an IPv4 or IPv6 address or CIDR range" in \
        response.get_json()["message"]["allowed_ips"][0]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(DeployToken.id))) == 0


def test_the_form_field_takes_an_allowlist_and_reports_a_bad_one(app, client, make, auth):
    make.project(PROJECT)
    make.user("maria")
    make.member("tanuki", "maria", "maintainer")
    auth.login("maria")
    settings = f"/{PROJECT}/-/settings/repository"
    create = settings + "/deploy_token/create"
    page = client.get(settings).get_data(as_text=True)
    assert 'id="deploy-tokens-allowed_ips"' in page
    data = {"name": "ci", "read_repository": "y"}
    bad = client.post(create, data={**data, **form_fields(client, settings),
                                     "allowed_ips": "10.0.0.0/33"})
    assert bad.status_code == 422
    assert "is not an IPv4 or IPv6 address or CIDR range" in bad.get_data(as_text=True)
    good = client.post(create, data={**data, **form_fields(client, settings),
                                      "allowed_ips": "192.0.2.0/24"})
    assert good.status_code == 201  # the answer itself shows the secret
    assert "Only from 192.0.2.0/24" in good.get_data(as_text=True)
    with app.app_context():
        [token] = db.session.scalars(sa.select(DeployToken))
        assert token.allowed_networks == ["192.0.2.0/24"]
        assert ipaddress.ip_address("192.0.2.1") in ipaddress.ip_network(token.allowed_networks[0])


def test_cli_option(app, make):
    make.project(PROJECT)
    result = app.test_cli_runner().invoke(args=[
        "deploy-tokens", "create", PROJECT, "--name", "x", "--scopes", "read_repository",
        "--allowed-ips", "127.0.0.1,::1"])
    assert result.exit_code == 0, result.output
    assert '"allowed_ips": ["127.0.0.1/32", "::1/128"]' in result.output
    bad = app.test_cli_runner().invoke(args=[
        "deploy-tokens", "create", PROJECT, "--name", "y", "--scopes", "read_repository",
        "--allowed-ips", "nope"])
    assert bad.exit_code == 1 and "nope is not an IPv4 or IPv6" in bad.output
    with app.app_context():
        assert [t.name for t in deploy_tokens.DEPLOY_TOKENS.list_for(None)] == ["x"]
