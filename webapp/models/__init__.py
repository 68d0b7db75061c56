"""The database models: columns, relationships and pure properties only."""
from .accounts import AccessLevel, Group, Membership, Project, User, Visibility
from .audit import AuditEvent
from .deploy_tokens import SCOPES, DeployToken
from .packages import PACKAGE_TYPES, Package, PackageFile, PackageTag
from .types import UTCDateTime, utcnow

__all__ = [
    "AccessLevel", "AuditEvent", "DeployToken", "Group", "Membership", "PACKAGE_TYPES", "Package",
    "PackageFile", "PackageTag", "Project",
    "SCOPES", "User", "UTCDateTime", "Visibility", "utcnow",
]
