"""Domain errors that the blueprints turn into HTTP answers."""


class DomainError(Exception):
    status = 400


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does."""

    status = 404


class Forbidden(DomainError):
    status = 403


class Invalid(DomainError):
    """Input that breaks a rule; `errors` maps each field to its messages."""

    status = 400

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(m for msgs in errors.values() for m in msgs))


class Unauthenticated(DomainError):
    """No usable credentials where some are needed, or credentials that match nothing."""

    status = 401


class CredentialRefused(Unauthenticated):
    """A kind of credential this door never takes (a CI job token): no retry helps."""


class Banned(Forbidden):
    """The client's address failed authentication too often: refused before any lookup."""


class AddressNotAllowed(Forbidden):
    """A valid token used from outside its address allowlist."""


class AccountLocked(Forbidden):
    """Too many wrong passwords for this account: password sign-in is refused for a while."""


class Malformed(DomainError):
    """Input no client should send (control characters, numbers out of range, ...)."""

    status = 400


class InsufficientStorage(DomainError):
    """The server has no room left to store what was sent; nothing was kept."""

    status = 507
