"""Personal access tokens: a user's credential for the REST API (`glpat-`)."""
from ..models import PAT_SCOPES, PersonalAccessToken
from .secret_tokens import TokenKind

PREFIX = "glpat-"

PERSONAL_ACCESS_TOKENS = TokenKind(
    key="personal_access_token", model=PersonalAccessToken, label="Personal access token",
    prefix=lambda: PREFIX, scopes=PAT_SCOPES,
    owner_values=lambda user: {"user_id": user.id},
    owner_filter=lambda user: PersonalAccessToken.user_id == user.id,
    audit_details=lambda token: {"name": token.name, "scopes": token.scopes},
    loaded_with=("user",),
)
