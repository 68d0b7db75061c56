"""Runner tokens: how a project's CI runner proves itself to /ci/variables (`glrt-`)."""
from ..models import RunnerToken
from .secret_tokens import TokenKind

PREFIX = "glrt-"  # GitLab's runner authentication token prefix

RUNNER_TOKENS = TokenKind(
    key="runner_token", model=RunnerToken, label="Runner", prefix=lambda: PREFIX,
    name_field="description", name_required=False,
    owner_values=lambda project: {"project_id": project.id},
    owner_filter=lambda project: RunnerToken.project_id == project.id,
    audit_details=lambda token: {"owner": token.project.full_path,
                                 "description": token.description},
    loaded_with=("project",),
)
