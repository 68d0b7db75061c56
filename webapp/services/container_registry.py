"""A project's images and tags, read from the registry's own API, and tag deletion.

The registry is the source of truth: Gatehouse asks it (`/v2/_catalog`, `tags/list`,
manifests) under a token it signs for itself, exactly as the registry expects from
`/jwt/auth`. A row per image repository gives it a stable id for GitLab's API
(`/registry/repositories/:id`); rows are made when the catalog shows a repository.

Deleting a tag: distribution 2.8 deletes manifests by digest only, which would take
every tag on that digest with it. When other tags share the digest, the tag is first
pointed at a tiny manifest of its own, which is then deleted (what GitLab did before
its registry could delete tags).
"""
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Optional
from urllib.parse import quote

import requests
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import ContainerRepository, Project, User
from . import audit, registry
from .errors import DomainError, NotFound
from .policy import Principal, PrincipalKind

# Who Gatehouse is when it talks to the registry itself (the token's `sub`).
SELF = Principal(PrincipalKind.SERVICE, name="gatehouse")
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TIMEOUT = 15
CATALOG_PAGE = 1000


class Unavailable(DomainError):
    """The registry could not be reached or answered with an error (503)."""

    status = 503


@dataclass(frozen=True)
class Tag:
    name: str
    digest: str
    size: int
    created_at: Optional[datetime]
    config_digest: str = ""


def api_url() -> str:
    url = current_app.config.get("REGISTRY_API_URL") or f"http://{current_app.config['REGISTRY_URL']}"
    return url.rstrip("/")


def location(name: str) -> str:
    return f"{current_app.config['REGISTRY_URL']}/{name}"


def _call(method: str, path: str, access: list[dict], *, ok=(200,), **kwargs) -> requests.Response:
    """One registry API request under a token for `access`; Unavailable unless `ok`."""
    token = registry.issue(SELF, access)["token"]
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    url = path if "://" in path else api_url() + path
    try:
        response = requests.request(method, url, headers=headers, timeout=TIMEOUT,
                                    allow_redirects=False, **kwargs)
    except requests.RequestException as error:
        raise Unavailable(f"The container registry cannot be reached ({error.__class__.__name__})")
    if response.status_code not in ok:
        raise Unavailable(f"The container registry answered {response.status_code} to "
                          f"{method} {path.split('?')[0]}")
    return response


def _repo_access(name: str, *actions: str) -> list[dict]:
    return [{"type": "repository", "name": name, "actions": list(actions)}]


def _catalog() -> list[str]:
    names, last = [], ""
    access = [{"type": "registry", "name": "catalog", "actions": ["*"]}]
    while True:
        query = f"?n={CATALOG_PAGE}" + (f"&last={quote(last)}" if last else "")
        page = _call("GET", f"/v2/_catalog{query}", access).json().get("repositories") or []
        names.extend(page)
        if len(page) < CATALOG_PAGE:
            return names
        last = page[-1]


def repositories(project: Project) -> list[ContainerRepository]:
    """The project's image repositories as the registry's catalog lists them now."""
    prefix = project.full_path.lower()
    names = [n for n in _catalog() if n == prefix or n.startswith(prefix + "/")]
    # A name below this project's path may belong to a deeper project: ask who owns it.
    names = [n for n in names if (owner := registry.project_for(n)) and owner.id == project.id]
    rows = {r.name: r for r in db.session.scalars(
        sa.select(ContainerRepository).where(ContainerRepository.project_id == project.id))}
    missing = [n for n in names if n not in rows]
    if missing:
        for name in missing:
            db.session.add(ContainerRepository(project_id=project.id, name=name))
        try:
            db.session.commit()
        except IntegrityError:  # listed by two requests at once: the other one made them
            db.session.rollback()
        rows = {r.name: r for r in db.session.scalars(
            sa.select(ContainerRepository).where(ContainerRepository.project_id == project.id))}
    return sorted((rows[n] for n in names if n in rows), key=lambda r: r.name)


def repository(project: Project, repository_id: int) -> ContainerRepository:
    row = db.session.get(ContainerRepository, repository_id)
    if row is None or row.project_id != project.id:
        raise NotFound("404 Repository Not Found")
    return row


def tag_names(repo: ContainerRepository) -> list[str]:
    response = _call("GET", f"/v2/{repo.name}/tags/list", _repo_access(repo.name, "pull"),
                     ok=(200, 404))
    if response.status_code == 404:  # a repository whose every tag was deleted
        return []
    return sorted(response.json().get("tags") or [])


def tag(repo: ContainerRepository, name: str) -> Tag:
    """A tag's digest, total size and creation time (from the image config)."""
    _check_tag(name)
    access = _repo_access(repo.name, "pull")
    response = _call("GET", f"/v2/{repo.name}/manifests/{name}", access, ok=(200, 404),
                     headers={"Accept": MANIFEST_TYPES})
    if response.status_code == 404:
        raise NotFound("404 Tag Not Found")
    digest = response.headers.get("Docker-Content-Digest") or (
        "sha256:" + hashlib.sha256(response.content).hexdigest())
    manifest = response.json()
    config = manifest.get("config") or {}
    parts = [config] + list(manifest.get("layers") or []) + list(manifest.get("manifests") or [])
    size = sum(int(p.get("size") or 0) for p in parts)
    created = None
    if config.get("digest"):
        blob = _call("GET", f"/v2/{repo.name}/blobs/{config['digest']}", access, ok=(200, 404))
        if blob.status_code == 200:
            created = _parse_time(blob.json().get("created"))
    return Tag(name, digest, size, created, config.get("digest", ""))


def _digest(repo: ContainerRepository, name: str) -> str:
    """A tag's manifest digest, from a HEAD request (no body, no config blob)."""
    response = _call("HEAD", f"/v2/{repo.name}/manifests/{name}", _repo_access(repo.name, "pull"),
                     ok=(200, 404), headers={"Accept": MANIFEST_TYPES})
    return response.headers.get("Docker-Content-Digest", "")


def tags(repo: ContainerRepository) -> list[Tag]:
    return [tag(repo, name) for name in tag_names(repo)]


def _parse_time(value) -> Optional[datetime]:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")[:32])
    except ValueError:
        return None


def _check_tag(name: str) -> None:
    # The registry's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    if not name or len(name) > 128 or name[0] in ".-" or not all(
            c.isascii() and (c.isalnum() or c in "_.-") for c in name):
        raise NotFound("404 Tag Not Found")


def delete_tag(project: Project, repo: ContainerRepository, name: str, *,
               actor: Optional[User], ip: Optional[str]) -> Tag:
    """Delete one tag; other tags, even on the same image, stay."""
    target = tag(repo, name)
    shared = any(_digest(repo, other) == target.digest
                 for other in tag_names(repo) if other != name)
    access = _repo_access(repo.name, "pull", "push", "delete")
    digest = _repoint(repo, name, access) if shared else target.digest
    _call("DELETE", f"/v2/{repo.name}/manifests/{digest}", access, ok=(202,))
    audit.record("container_tag_deleted", project, actor=actor, ip=ip,
                 repository=repo.name, tag=name, digest=target.digest)
    db.session.commit()
    return target


def _repoint(repo: ContainerRepository, name: str, access: list[dict]) -> str:
    """Point the tag at a manifest of its own; return that manifest's digest."""
    config = json.dumps({"gatehouse": "deleted tag", "repository": repo.name, "tag": name}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    started = _call("POST", f"/v2/{repo.name}/blobs/uploads/", access, ok=(202,))
    location_ = started.headers["Location"]
    separator = "&" if "?" in location_ else "?"
    _call("PUT", f"{location_}{separator}digest={config_digest}", access, ok=(201,), data=config,
          headers={"Content-Type": "application/octet-stream"})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
        "size": len(config)}, "layers": []}).encode()
    _call("PUT", f"/v2/{repo.name}/manifests/{name}", access, ok=(201,), data=manifest,
          headers={"Content-Type": OCI_MANIFEST})
    return "sha256:" + hashlib.sha256(manifest).hexdigest()
