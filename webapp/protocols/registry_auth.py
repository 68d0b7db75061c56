"""`GET /jwt/auth`: the token endpoint of the container registry (distribution's token auth).

The registry answers an unauthenticated client with `401` and
`WWW-Authenticate: Bearer realm="<us>/jwt/auth",service=...,scope=...`; the client
(docker, skopeo) then asks us here, with basic auth when it holds credentials, for a
token naming the repositories and actions it needs. `docker login` asks with no scope
at all, just to check the credentials. We grant per scope exactly what the access
policy allows and sign that subset; the registry enforces it.
"""
from typing import Optional

import click
from flask import Blueprint, Response, current_app, jsonify, request

from ..services import credentials, registry
from .auth import REALM, BadCredentials, Banned, principal_behind_ban

bp = Blueprint("registry_auth", __name__, cli_group="registry")


def _error(status: int, code: str, message: str, headers: Optional[dict] = None) -> Response:
    # The registry's own error shape, which docker prints as "<code>: <message>".
    response = jsonify(errors=[{"code": code, "message": message}])
    response.status_code = status
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/jwt/auth")
def auth():
    """Check the credentials, grant each requested scope what the policy allows, sign."""
    service = str(current_app.config["REGISTRY_SERVICE"])
    asked = request.args.get("service")
    if asked != service:
        # A registry configured with another service name would refuse our `aud` anyway.
        return _error(400, "INVALID_REQUEST",
                      f"unknown service {asked!r}: this token service signs for {service!r}"
                      if asked else f"the service parameter is required ({service!r})")

    try:
        # The ban is shared with git: an IP banned there is banned here too.
        principal = principal_behind_ban(request)
    except Banned as banned:
        return _error(403, "DENIED", str(banned))
    except BadCredentials:
        return _error(401, "UNAUTHORIZED", "HTTP Basic: Access denied",
                      {"WWW-Authenticate": f'Basic realm="{REALM}"'})

    raw_scopes = request.args.getlist("scope")
    if principal.kind == "deploy_token" and not registry.may_log_in(principal):
        # As GitLab: a token without registry scopes has no business with the registry.
        return _error(403, "DENIED", "access forbidden: this deploy token has no registry scope")
    if not raw_scopes and principal.is_anonymous:
        # A login check without credentials: ask for them (not a failed attempt).
        return _error(401, "UNAUTHORIZED", "authentication required",
                      {"WWW-Authenticate": f'Basic realm="{REALM}"'})

    access = registry.access_for(principal, raw_scopes)
    _log_decision(principal, raw_scopes, access)
    credentials.record_use(principal, request.remote_addr)
    response = jsonify(registry.issue(principal, access))
    response.headers["Cache-Control"] = "no-store"
    return response


def _log_decision(principal, raw_scopes: list[str], access: list[dict]) -> None:
    """One line per token: who, what was asked, what was granted (never a secret)."""
    account = "anonymous" if principal.is_anonymous else f"{principal.kind}:{principal.name}"
    granted = " ".join(f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in access)
    current_app.logger.info("registry token for %s asked=[%s] granted=[%s]", account,
                            " ".join(raw_scopes) or "login", granted)


@bp.cli.command("config")
@click.option("--listen", metavar="HOST:PORT",
              help="Where the registry listens (default: GATEHOUSE_REGISTRY_URL).")
def config_command(listen):
    """Print a config.yml for `docker-registry serve` that trusts Gatehouse's tokens."""
    url = str(current_app.config["REGISTRY_URL"])
    listen = listen or url.split("://", 1)[-1].split("/", 1)[0]
    try:
        click.echo(registry.registry_config(listen), nl=False)
    except RuntimeError as error:  # a configured key that is missing, a key without cert
        raise click.ClickException(str(error))
