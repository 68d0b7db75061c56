"""Runner tokens: create, list and revoke them; find the runner behind a secret."""
from datetime import datetime
from typing import Optional

import sqlalchemy as sa

from ..extensions import db
from ..models import Project, RunnerToken, User, utcnow
from . import audit, secret_tokens
from .secret_tokens import digest
from .errors import Invalid, NotFound

PREFIX = "glrt-"  # GitLab's runner authentication token prefix
DESCRIPTION_MAX = 255


def generate_secret() -> str:
    return secret_tokens.generate(PREFIX)


def create(project: Project, *, description: Optional[str] = None,
           actor: Optional[User] = None, ip: Optional[str] = None,
           now: Optional[datetime] = None) -> tuple[RunnerToken, str]:
    """Create a runner token for one project; return it with its secret, shown once."""
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX:
        raise Invalid({"description": [
            f"Description is too long (maximum is {DESCRIPTION_MAX} characters)"]})
    secret = generate_secret()
    token = RunnerToken(project_id=project.id, description=description,
                        token_digest=digest(secret), created_at=now or utcnow(),
                        creator_id=actor.id if actor else None)
    db.session.add(token)
    db.session.flush()
    audit.record("runner_token_created", token, actor=actor, ip=ip, owner=project.full_path,
                 description=description)
    db.session.commit()
    return token, secret


def list_for(project: Project, *, active: Optional[bool] = None) -> list[RunnerToken]:
    """The project's runner tokens, newest first; `active` filters on revoked."""
    query = (sa.select(RunnerToken).where(RunnerToken.project_id == project.id)
             .order_by(RunnerToken.id.desc()))
    if active is not None:
        query = query.where(RunnerToken.revoked.is_(not active))
    return list(db.session.scalars(query))


def get_for(project: Project, token_id: int) -> RunnerToken:
    token = db.session.scalar(sa.select(RunnerToken).where(
        RunnerToken.project_id == project.id, RunnerToken.id == token_id))
    if token is None:
        raise NotFound("Runner not found")
    return token


def revoke(project: Project, token_id: int, *, actor: Optional[User] = None,
           ip: Optional[str] = None, now: Optional[datetime] = None) -> RunnerToken:
    """Revoke a runner token for good. Revoking a revoked token changes nothing."""
    token = get_for(project, token_id)
    if secret_tokens.mark_revoked(token, now):
        audit.record("runner_token_revoked", token, actor=actor, ip=ip,
                     owner=project.full_path, description=token.description)
        db.session.commit()
    return token


def find_active(secret: Optional[str]) -> Optional[RunnerToken]:
    """Return the unrevoked runner token with this secret, or None."""
    if not secret or not secret.startswith(PREFIX):
        return None
    token = secret_tokens.by_secret(RunnerToken, secret)
    if token is None or token.revoked:
        return None
    return token

