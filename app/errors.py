"""Domain exceptions; each carries its HTTP status and is rendered as RFC 9457 problem details."""

from __future__ import annotations


class ChisoError(Exception):
    status = 500
    title = "Internal error"
    headers: dict[str, str] | None = None

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(ChisoError):
    status, title = 400, "Bad request"


class Unauthorized(ChisoError):
    status, title = 401, "Unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ChisoError):
    status, title = 403, "Forbidden"


class NotFound(ChisoError):
    status, title = 404, "Not found"


class PayloadTooLarge(ChisoError):
    status, title = 413, "Payload too large"


class UnsupportedMediaType(ChisoError):
    status, title = 415, "Unsupported media type"


class Unprocessable(ChisoError):
    """Validation failure; `errors` is a list of {loc, msg}."""

    status, title = 422, "Validation failed"

    def __init__(self, detail: str, errors: list[dict]):
        super().__init__(detail, errors=errors)


class TooManyRequests(ChisoError):
    status, title = 429, "Too many requests"

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}


class Unavailable(ChisoError):
    status, title = 503, "Service unavailable"

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}
