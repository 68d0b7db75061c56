"""Operator commands: `flask --app wsgi <group> <command>`."""
import base64
import json
import os
import secrets
from datetime import date
from pathlib import Path
from typing import Optional

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .extensions import db
from .models import User, iso8601
from .services import accounts, deploy_tokens, encryption, personal_access_tokens, runners
from .services.errors import DomainError, NotFound


def _fail(error: Exception):
    # One clear line on stderr and a non-zero exit, for scripts.
    raise click.ClickException(str(error))


def _owner(full_path: str):
    owner = accounts.find_target(full_path)
    if owner is None:
        _fail(NotFound(f"No group or project at '{full_path}'"))
    return owner


users = AppGroup("users", help="Manage user accounts.")
groups = AppGroup("groups", help="Manage groups.")
projects = AppGroup("projects", help="Manage projects.")
members = AppGroup("members", help="Manage memberships.")
tokens = AppGroup("deploy-tokens", help="Manage deploy tokens.")
runner_tokens = AppGroup("runners", help="Manage the runner tokens of projects.")
leaked = AppGroup("tokens", help="Look up and revoke token values of any kind (leak response).")
hooks_cli = AppGroup("webhooks", help="Deliver queued webhook events.")
crypto = AppGroup("encryption", help="Manage the key that encrypts recoverable secrets.")


@users.command("create")
@click.argument("username")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
def users_create(username, email, password, admin):
    """Create a user."""
    try:
        user = accounts.create_user(username, email, password, admin=admin)
    except DomainError as error:
        _fail(error)
    click.echo(f"Created user {user.username} (id {user.id}){' as admin' if admin else ''}")


@users.command("unlock")
@click.argument("username")
def users_unlock(username):
    """Lift an account lock (too many wrong passwords) before it runs out."""
    try:
        accounts.unlock(username)
    except DomainError as error:
        _fail(error)
    click.echo(f"Unlocked {username}: password sign-in works again")


def _expiry_option(expires_at: Optional[str]):
    try:
        return deploy_tokens.expiry_from_date(date.fromisoformat(expires_at))
    except ValueError:
        _fail(ValueError(f"--expires-at '{expires_at}' is not a date (use YYYY-MM-DD)"))


GRACE_HELP = ("Seconds the previous secret keeps working (0 to 604800, i.e. 7 days; "
              "default 86400).")


def _rotate(kind, owner, token_id: int, expires_at: Optional[str], grace_period: Optional[int]):
    """Rotate a token of any kind; print the JSON a script needs (the new secret, once)."""
    options = {"grace_period": grace_period}
    if expires_at:
        options["expires_at"] = _expiry_option(expires_at)
    try:
        token, secret = kind.rotate(owner, token_id, **options)
    except (DomainError, encryption.EncryptionKeyError) as error:
        _fail(error)
    click.echo(json.dumps({"id": token.id, "name": token.name, "token": secret,
                           "expires_at": iso8601(token.expires_at),
                           "previous_token_expires_at": iso8601(token.previous_expires_at)}))


@users.command("token")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for.")
@click.option("--scopes", required=True, help="Comma-separated: api and/or read_api.")
@click.option("--expires-at", help="YYYY-MM-DD; the token stops working at 00:00 UTC that day.")
def users_token(username, name, scopes, expires_at):
    """Create a personal access token for the REST API and print it (shown only once)."""
    user = accounts.find_user(username)
    if user is None:
        _fail(NotFound(f"No user '{username}'"))
    expiry = None
    if expires_at:
        try:
            expiry = deploy_tokens.expiry_from_date(date.fromisoformat(expires_at))
        except ValueError:
            _fail(ValueError(f"--expires-at '{expires_at}' is not a date (use YYYY-MM-DD)"))
    try:
        _, secret = personal_access_tokens.PERSONAL_ACCESS_TOKENS.create(
            user, name=name, scopes=scopes.split(","), expires_at=expiry, actor=user)
    except DomainError as error:
        _fail(error)
    click.echo(secret)


@users.command("rotate-token")
@click.argument("username")
@click.argument("token_id", type=int)
@click.option("--expires-at", help="A new expiry date, YYYY-MM-DD (default: keep it).")
@click.option("--grace-period", type=int, help=GRACE_HELP)
def users_rotate_token(username, token_id, expires_at, grace_period):
    """Give a personal access token a new secret and print it as JSON (shown only once)."""
    user = accounts.find_user(username)
    if user is None:
        _fail(NotFound(f"No user '{username}'"))
    _rotate(personal_access_tokens.PERSONAL_ACCESS_TOKENS, user, token_id, expires_at,
            grace_period)


@groups.command("create")
@click.argument("full_path")
@click.option("--name", help="Display name (defaults to the path).")
def groups_create(full_path, name):
    """Create a group; its parent group must exist."""
    try:
        group = accounts.create_group(full_path, name=name)
    except DomainError as error:
        _fail(error)
    click.echo(f"Created group {group.full_path} (id {group.id})")


@projects.command("create")
@click.argument("full_path")
@click.option("--name", help="Display name (defaults to the path).")
@click.option("--visibility", type=click.Choice(["private", "internal", "public"]),
              default="private", show_default=True)
def projects_create(full_path, name, visibility):
    """Create a project inside an existing group."""
    try:
        project = accounts.create_project(full_path, name=name, visibility=visibility)
    except DomainError as error:
        _fail(error)
    click.echo(f"Created project {project.full_path} (id {project.id})")


@members.command("add")
@click.argument("full_path")
@click.argument("username")
@click.argument("role")
def members_add(full_path, username, role):
    """Give USERNAME the ROLE (guest|reporter|developer|maintainer|owner) on a group or project."""
    try:
        accounts.add_member(full_path, username, role)
    except DomainError as error:
        _fail(error)
    click.echo(f"{username} is now {role.lower()} of {full_path}")


@tokens.command("create")
@click.argument("full_path")
@click.option("--name", required=True)
@click.option("--scopes", required=True, help="Comma-separated, e.g. read_repository,read_registry")
@click.option("--username", help="Defaults to gitlab+deploy-token-{id}.")
@click.option("--expires-at", help="YYYY-MM-DD; the token stops working at 00:00 UTC that day.")
@click.option("--allowed-ips", help="Comma-separated addresses and CIDR ranges the token may "
                                    "be used from (default: anywhere).")
def tokens_create(full_path, name, scopes, username, expires_at, allowed_ips):
    """Create a deploy token and print it as JSON (the only time the token is shown)."""
    owner = _owner(full_path)
    expiry = None
    if expires_at:
        try:
            expiry = deploy_tokens.expiry_from_date(date.fromisoformat(expires_at))
        except ValueError:
            _fail(ValueError(f"--expires-at '{expires_at}' is not a date (use YYYY-MM-DD)"))
    try:
        token, secret = deploy_tokens.create(
            owner, name=name, scopes=scopes.split(","), username=username, expires_at=expiry,
            allowed_ips=allowed_ips)
    except (DomainError, encryption.EncryptionKeyError) as error:
        _fail(error)
    click.echo(json.dumps({"id": token.id, "name": token.name, "username": token.username,
                           "token": secret, "scopes": token.scopes,
                           "expires_at": iso8601(token.expires_at),
                           "allowed_ips": token.allowed_networks}))


@tokens.command("list")
@click.argument("full_path")
def tokens_list(full_path):
    """List the deploy tokens of a group or project as JSON lines (never the secrets)."""
    now = deploy_tokens.utcnow()
    for token in deploy_tokens.DEPLOY_TOKENS.list_for(_owner(full_path)):
        click.echo(json.dumps({
            "id": token.id, "name": token.name, "username": token.username,
            "scopes": token.scopes, "expires_at": iso8601(token.expires_at),
            "revoked": token.revoked, "expired": token.expired_at(now),
            "last_used_at": iso8601(token.last_used_at), "last_used_ip": token.last_used_ip,
            "allowed_ips": token.allowed_networks,
            "previous_token_expires_at": iso8601(
                token.previous_expires_at if token.in_grace_at(now) else None)}))


@tokens.command("revoke")
@click.argument("full_path")
@click.argument("token_id", type=int)
def tokens_revoke(full_path, token_id):
    """Revoke a deploy token of a group or project."""
    try:
        token = deploy_tokens.DEPLOY_TOKENS.revoke(_owner(full_path), token_id)
    except DomainError as error:
        _fail(error)
    click.echo(f"Revoked deploy token {token.id} ({token.name})")


@tokens.command("rotate")
@click.argument("full_path")
@click.argument("token_id", type=int)
@click.option("--expires-at", help="A new expiry date, YYYY-MM-DD (default: keep it).")
@click.option("--grace-period", type=int, help=GRACE_HELP)
def tokens_rotate(full_path, token_id, expires_at, grace_period):
    """Give a deploy token a new secret and print it as JSON (shown only once)."""
    _rotate(deploy_tokens.DEPLOY_TOKENS, _owner(full_path), token_id, expires_at, grace_period)


def _project(full_path: str):
    project = accounts.find_project(full_path)
    if project is None:
        _fail(NotFound(f"No project at '{full_path}'"))
    return project


@runner_tokens.command("create")
@click.argument("full_path")
@click.option("--description", default="", help="What runs with it, e.g. 'build host 1'.")
def runners_create(full_path, description):
    """Create a runner token for a project and print it as JSON (the only time it is shown)."""
    project = _project(full_path)
    try:
        token, secret = runners.RUNNER_TOKENS.create(project, name=description)
    except DomainError as error:
        _fail(error)
    click.echo(json.dumps({"id": token.id, "project": project.full_path,
                           "description": token.description, "token": secret}))


@runner_tokens.command("list")
@click.argument("full_path")
def runners_list(full_path):
    """List a project's runner tokens as JSON lines (never the secrets)."""
    for token in runners.RUNNER_TOKENS.list_for(_project(full_path)):
        click.echo(json.dumps({
            "id": token.id, "description": token.description, "revoked": token.revoked,
            "created_at": iso8601(token.created_at), "last_used_at": iso8601(token.last_used_at),
            "last_used_ip": token.last_used_ip}))


@runner_tokens.command("revoke")
@click.argument("full_path")
@click.argument("token_id", type=int)
def runners_revoke(full_path, token_id):
    """Revoke a runner token of a project."""
    try:
        token = runners.RUNNER_TOKENS.revoke(_project(full_path), token_id)
    except DomainError as error:
        _fail(error)
    click.echo(f"Revoked runner token {token.id} ({token.label})")


@runner_tokens.command("rotate")
@click.argument("full_path")
@click.argument("token_id", type=int)
@click.option("--grace-period", type=int, help=GRACE_HELP)
def runners_rotate(full_path, token_id, grace_period):
    """Give a runner token a new secret and print it as JSON (shown only once)."""
    _rotate(runners.RUNNER_TOKENS, _project(full_path), token_id, None, grace_period)


def _leaked_values(stream):
    for line in stream:
        value = line.strip()
        if value and not value.startswith("#"):
            yield value


def _masked(value: str) -> str:
    # Enough to match a report line to its input, never the whole secret.
    return value[:9] + "…" if len(value) > 12 else "…"


def _leak_report(value: str, found, now) -> dict:
    if found is None:
        return {"value": _masked(value), "found": False}
    token = found.token
    owner = token.owner
    return {"value": _masked(value), "found": True, "kind": found.kind.key, "id": token.id,
            "name": token.name, "owner": getattr(owner, "full_path", None)
            or getattr(owner, "username", None), "scopes": token.scopes,
            "matched": found.matched, "state": found.state(now),
            "last_used_at": iso8601(token.last_used_at), "last_used_ip": token.last_used_ip}


VALUES = click.argument("values", type=click.File("r"), default="-")


@leaked.command("identify")
@VALUES
def leaked_identify(values):
    """Say what each value in VALUES (default: standard input; one per line) is; change nothing."""
    from .services import secret_tokens
    for value in _leaked_values(values):
        click.echo(json.dumps(_leak_report(value, secret_tokens.identify(value),
                                           deploy_tokens.utcnow())))


@leaked.command("revoke")
@VALUES
def leaked_revoke(values):
    """Revoke the token of each value in VALUES (default: standard input; one per line);
    print JSON lines.

    A value that is the previous secret of a rotated token only loses its grace period.
    Exits 1 when some value matched no token.
    """
    from .services import secret_tokens
    unknown = 0
    for value in _leaked_values(values):
        found = secret_tokens.revoke_value(value)
        unknown += found is None
        click.echo(json.dumps(_leak_report(value, found, deploy_tokens.utcnow())))
    if unknown:
        raise click.exceptions.Exit(1)


@crypto.command("rotate")
@click.option("--new-key-file", required=True, type=click.Path(dir_okay=False),
              help="File holding the new key (base64 of 32 bytes); generated (0600) if absent.")
def encryption_rotate(new_key_file):
    """Re-encrypt every stored ciphertext under a new key, in one transaction."""
    path = Path(new_key_file)
    try:
        old_key = encryption.current_key()
        if not path.exists():
            from .config import _instance_secret
            _instance_secret(path, make=encryption.new_key)
            click.echo(f"Generated a new key in {path}")
        new_key = encryption.parse_key(path.read_text(), source=str(path))
        changed = encryption.rotate(old_key, new_key)
    except (encryption.EncryptionKeyError, encryption.DecryptionError, OSError) as error:
        _fail(error)
    click.echo(f"Re-encrypted {changed} secret(s) from key {encryption.key_id(old_key)} "
               f"to key {encryption.key_id(new_key)}.")
    source = encryption.key_source()
    if source == "config":
        click.echo(f"Now set GATEHOUSE_ENCRYPTION_KEY to the contents of {path} and restart "
                   "Gatehouse: until then CI jobs cannot get CI_DEPLOY_PASSWORD.")
        return
    try:
        _replace_key_file(Path(source), new_key)
    except OSError as error:
        _fail(OSError(f"The database now uses the key in {path}, but writing it to {source} "
                      f"failed ({error}): copy {path} to {source} by hand."))
    click.echo(f"Wrote the new key to {source}; running servers use it from the next request. "
               f"Delete {path} once you have stored the key safely elsewhere.")


def _replace_key_file(target: Path, key: bytes) -> None:
    """Swap the instance key file atomically, so no reader ever sees half a key."""
    tmp = target.with_name(f".{target.name}.rotate.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode("ascii"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


@hooks_cli.command("deliver")
def webhooks_deliver():
    """Send every queued webhook delivery that is due (failures are retried with backoff)."""
    from .services import webhooks
    outcome = webhooks.deliver_due()
    click.echo(f"Webhooks: {outcome['delivered']} delivered, {outcome['retrying']} to retry, "
               f"{outcome['failed']} failed for good")


@click.command("notify")
@with_appcontext
def notify():
    """Mail expiry warnings that are due (cron-safe: each mail is sent once)."""
    from .services import expiry_warnings
    try:
        summary = expiry_warnings.run()
    except ValueError as error:
        _fail(error)
    click.echo(f"Expiry warnings: {summary.tokens} token(s), {summary.mails} mail(s) sent"
               + (f", {summary.failed} failed (retried next pass)" if summary.failed else ""))
    if summary.failed:
        raise click.exceptions.Exit(1)


@click.command("seed-demo")
@with_appcontext
def seed_demo():
    """Create demo users, groups and projects when the database has no users."""
    if db.session.scalar(sa.select(sa.func.count(User.id))):
        click.echo("The database already has users; nothing seeded.")
        return
    password = secrets.token_urlsafe(12)
    accounts.create_user("root", "root@example.com", password, admin=True)
    accounts.create_user("maintainer", "maintainer@example.com", password)
    accounts.create_user("developer", "developer@example.com", password)
    accounts.create_user("reporter", "reporter@example.com", password)
    accounts.create_group("tanuki", name="Tanuki")
    accounts.create_group("tanuki/infra", name="Infra")
    accounts.create_project("tanuki/awesome_project", name="Awesome project")
    accounts.create_project("tanuki/infra/deploy", name="Deploy")
    accounts.create_project("tanuki/website", name="Website", visibility="public")
    accounts.add_member("tanuki", "maintainer", "maintainer")
    accounts.add_member("tanuki", "developer", "developer")
    accounts.add_member("tanuki", "reporter", "reporter")
    url = current_app.config["EXTERNAL_URL"]
    text = (f"Sign in at {url}/users/sign_in as root (admin), maintainer, developer or "
            f"reporter (members of group tanuki), password: {password}\n"
            f"Deploy tokens: {url}/tanuki/awesome_project/-/settings/repository\n")
    # Kept (0600) beside the database so that `make run` can remind the operator later.
    path = Path(current_app.config["DEMO_CREDENTIALS_FILE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)
    click.echo("Demo seeded. " + text, nl=False)


packages_cli = AppGroup("packages", help="Maintain package storage.")


@packages_cli.command("gc")
@click.option("--spool-age", type=int, default=None,
              help="Remove nginx spool files older than this many seconds. Default: the "
                   "body timeout plus the app's timeout (+60); 0 when no nginx is running.")
def packages_gc(spool_age):
    """Remove temp files whose upload died, stale spool files and files nothing points to."""
    from .services import package_storage
    removed = package_storage.gc(spool_age=spool_age)
    click.echo(f"Removed {removed['tmp']} temp file(s), {removed['spool']} spool file(s) and "
               f"{removed['content']} unreferenced file(s), {removed['bytes']} bytes")


@packages_cli.command("maven-duplicates")
@click.argument("full_path")
@click.argument("setting", type=click.Choice(["allow", "refuse"]))
def packages_maven_duplicates(full_path, setting):
    """Allow (GitLab's default) or refuse uploading a Maven release's file again."""
    from .services import packages
    try:
        packages.set_maven_duplicates(full_path, setting == "allow")
    except DomainError as error:
        _fail(error)
    click.echo(f"Maven duplicates in {full_path}: {'allowed' if setting == 'allow' else 'refused'} "
               "(SNAPSHOT versions are always accepted)")


repositories_cli = AppGroup("repositories", help="Maintain git repository storage.")


@repositories_cli.command("gc")
def repositories_gc():
    """Remove push quarantines and half-created repositories left by crashes."""
    from .services import repositories
    removed = repositories.gc()
    click.echo(f"Removed {removed['quarantines']} abandoned push quarantine(s) and "
               f"{removed['staged']} half-created repositor(y/ies)")


nginx_cli = AppGroup("nginx", help="The nginx in front of Gatehouse.")


@nginx_cli.command("config")
@click.option("--listen", default="127.0.0.1:5000", show_default=True,
              help="The public address nginx listens on.")
@click.option("--upstream", "upstreams", multiple=True,
              help="A gunicorn address (host:port or unix:/path); repeat for several hosts. "
                   "Default: 127.0.0.1:8080.")
@click.option("--runtime-dir", default=None,
              help="pid, logs and request-body temp files. Default: instance/nginx.")
@click.option("--workers", default="auto", show_default=True, help="worker_processes.")
@click.option("--user", default="", help="Run nginx's workers as this user.")
def nginx_config(listen, upstreams, runtime_dir, workers, user):
    """Print an nginx.conf that fronts Gatehouse (start: nginx -p DIR -c FILE)."""
    from .services import nginx, package_storage
    runtime = Path(runtime_dir or Path(current_app.instance_path) / "nginx")
    # nginx creates its spool folder, but not the folders above it.
    package_storage.root().mkdir(parents=True, exist_ok=True)
    click.echo(nginx.config(listen=listen, upstreams=list(upstreams) or ["127.0.0.1:8080"],
                            runtime_dir=runtime, worker_processes=workers, user=user), nl=False)


def register(app) -> None:
    for command in (users, groups, projects, members, tokens, runner_tokens, leaked, crypto,
                    packages_cli, repositories_cli, nginx_cli, hooks_cli, notify, seed_demo):
        app.cli.add_command(command)
