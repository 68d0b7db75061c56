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
