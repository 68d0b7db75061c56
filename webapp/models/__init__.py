"""The database models: columns, relationships and pure properties only."""
from .accounts import AccessLevel, Group, Membership, Project, Route, User, Visibility
from .audit import AuditEvent
from .auth_ban import AuthFailure
from .container_registry import ContainerRepository
from .deploy_tokens import SCOPES, DeployToken
from .lfs import LfsLock, LfsObject, LfsObjectProject
from .forms import FormSubmission
from .notifications import ExpiryNotification
from .packages import PACKAGE_TYPES, Package, PackageFile, PackageTag
from .personal_access_tokens import PAT_SCOPES, PersonalAccessToken
from .runners import RunnerToken
from .types import UTCDateTime, iso8601, utcnow
from .webhooks import Webhook, WebhookDelivery

__all__ = [
    "AccessLevel", "AuditEvent", "AuthFailure", "ContainerRepository", "DeployToken",
    "ExpiryNotification", "FormSubmission", "Group", "LfsLock", "LfsObject",
    "LfsObjectProject", "Membership",
    "PACKAGE_TYPES", "PAT_SCOPES", "Package", "PackageFile", "PackageTag",
    "PersonalAccessToken", "Project", "Route", "RunnerToken", "SCOPES", "User",
    "UTCDateTime", "Visibility", "Webhook", "WebhookDelivery", "iso8601", "utcnow",
]
