"""Personal access tokens: a user's credential for the REST API."""
import sqlalchemy as sa
import sqlalchemy.orm as so

from ..extensions import db
from .accounts import User
from .tokens import SecretToken

# Scope name → the description shown beside its checkbox.
PAT_SCOPES = {
    "api": "Grants complete read and write access to the API.",
    "read_api": "Grants read access to the API.",
}


class PersonalAccessToken(SecretToken, db.Model):
    __tablename__ = "personal_access_tokens"

    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id"), index=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(255))

    user: so.Mapped[User] = so.relationship()

    @property
    def owner(self) -> User:
        return self.user

    def __repr__(self) -> str:
        return f"<PersonalAccessToken {self.id} {self.name}>"
