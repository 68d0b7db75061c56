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

from ..services import registry
from ..services.credentials import DEPLOY_TOKEN, Door
from ..services.errors import DomainError, Unauthenticated
from ..services.policy import INSTANCE, Action, authorize
from .auth import REALM, authenticate

bp = Blueprint("registry_auth", __name__, cli_group="registry")
# docker, skopeo and podman send basic auth: a deploy token with its username, or a user.
DOOR = Door("registry", passwords=True, basic_tokens=frozenset({DEPLOY_TOKEN}))
CODES = {400: "INVALID_REQUEST", 401: "UNAUTHORIZED", 403: "DENIED"}


def _error(status: int, code: str, message: str, headers: Optional[dict] = None) -> Response:
    # The registry's own error shape, which docker prints as "<code>: <message>".
    response = jsonify(errors=[{"code": code, "message": message}])
    response.status_code = status
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(DomainError)
def _refused(error: DomainError) -> Response:
    headers = {"WWW-Authenticate": f'Basic realm="{REALM}"'} \
        if isinstance(error, Unauthenticated) else None
    return _error(error.status, CODES.get(error.status, "DENIED"), str(error), headers)


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

    # The ban, the lookup and the accounting are every door's: an IP banned on git or
    # packages is banned here too.
    principal = authenticate(DOOR)
    raw_scopes = request.args.getlist("scope")
    if raw_scopes == [] or not principal.is_anonymous:
        # `docker login` (no scope) checks the credentials; as GitLab, credentials without
        # any registry right have no business with the registry.
        authorize(principal, Action.REGISTRY_LOGIN, INSTANCE)

    access = registry.access_for(principal, raw_scopes)
    _log_decision(principal, raw_scopes, access)
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
