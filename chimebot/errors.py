"""Domain errors: the small set of typed failures that services raise and HTTP maps to statuses."""

from __future__ import annotations


class DomainError(Exception):
    """A failure a client can act on; ``code`` is stable, ``message`` is for people."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class Invalid(DomainError):
    """The request is malformed or breaks a rule about its content."""

    status = 400
    code = "invalid"


class Unprocessable(DomainError):
    """The request is well formed, but the server's own setup could not handle it (a failing template)."""

    status = 422
    code = "unprocessable"


class Unauthorized(DomainError):
    """No credentials, or credentials that do not identify anyone."""

    status = 401
    code = "unauthorized"


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    status = 403
    code = "forbidden"


class ProRequired(Forbidden):
    """A Basic user tried a Pro feature."""

    code = "pro_required"

    def __init__(self, feature: str) -> None:
        super().__init__(
            f"{feature[:1].upper()}{feature[1:]} needs a Pro license; you have Basic. "
            "An administrator of your account can assign Pro to you."
        )
        self.feature = feature


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does."""

    status = 404
    code = "not_found"


class Conflict(DomainError):
    """The request clashes with the current state (a duplicate, a limit, the last admin)."""

    status = 409
    code = "conflict"


class TooLarge(DomainError):
    """The request or its content is over a size limit."""

    status = 413
    code = "too_large"


class RateLimited(DomainError):
    """Too many requests; ``retry_after`` says when to try again, in seconds."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """The server cannot take this now (shutting down, storage away); retrying later will work."""

    status = 503
    code = "unavailable"
