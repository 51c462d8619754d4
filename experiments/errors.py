"""Domain errors. The HTTP edge maps each to its status code and the one error shape."""


class KairosError(Exception):
    """Base of every error a service raises on purpose."""

    status = 400

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class NotFound(KairosError):
    status = 404


class Conflict(KairosError):
    """The request is valid but the resource's current state does not allow it."""

    status = 409


class InvalidSpec(KairosError):
    """An input that is well-formed (JSON, a query string) but breaks a rule of the domain,
    field by field: a 422, as every rule broken by a readable request is."""

    status = 422

    def __init__(self, errors: dict[str, list[str]]):
        field, messages = next(iter(errors.items()))
        more = sum(len(m) for m in errors.values()) - 1
        suffix = f" (and {more} more)" if more > 0 else ""
        super().__init__(f"Invalid {field}: {messages[0]}{suffix}", errors)
