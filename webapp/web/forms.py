"""Forms check shape only; the services hold the rules."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Optional

from ..models import PAT_SCOPES, SCOPES


class SignInForm(FlaskForm):
    username = StringField("Username or email", validators=[DataRequired("Enter your username")])
    password = PasswordField("Password", validators=[DataRequired("Enter your password")])
    remember_me = BooleanField("Remember me")


class TokenForm(FlaskForm):
    """What every create form of a token panel has: a one-time token (web/one_time.py)."""

    form_token = HiddenField()
    scope_errors: list[str] = []

    def selected_scopes(self) -> list[str]:
        return [scope for scope in self.scopes if getattr(self, scope).data]


class DeployTokenForm(TokenForm):
    scopes = SCOPES
    name = StringField("Name")
    expires_at = DateField(
        "Expiration date (optional)", validators=[Optional()],
        format="%Y-%m-%d")
    username = StringField("Username (optional)")
    allowed_ips = StringField("Allowed IP addresses (optional)")


for _scope, _description in SCOPES.items():
    setattr(DeployTokenForm, _scope, BooleanField(_scope, description=_description))


class RunnerTokenForm(TokenForm):
    scopes: dict[str, str] = {}
    description = StringField("Description (optional)")


class PersonalAccessTokenForm(TokenForm):
    scopes = PAT_SCOPES
    name = StringField("Token name")
    expires_at = DateField("Expiration date (optional)", validators=[Optional()], format="%Y-%m-%d")


for _scope, _description in PAT_SCOPES.items():
    setattr(PersonalAccessTokenForm, _scope, BooleanField(_scope, description=_description))


class WebhookForm(FlaskForm):
    url = StringField("URL")
    token = StringField("Secret token (optional)")
    deploy_token_events = BooleanField("Deploy token events", default=True)
    enable_ssl_verification = BooleanField("Enable SSL verification", default=True)
