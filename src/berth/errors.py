"""The exception tree of the management side.

    BerthError                 any error a caller can act on; carries an HTTP status
    ├── InvalidInput           400/422: a value is wrong; names the field and the value
    ├── Unauthenticated        401: missing or unknown credentials
    ├── Forbidden              403: the caller sees the resource but may not act on it
    ├── NotFound               404: no such resource, or the caller cannot see it
    ├── Conflict               409: the request clashes with the current state
    └── CapacityError          409: more instances than the platform can ever hold

Handlers translate them into one JSON envelope:
`{"error": {"code": ..., "message": ..., "field": ...}}`.
"""

from typing import Any


class BerthError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if self.details:
            error["details"] = self.details
        return {"error": error}


class InvalidInput(BerthError):
    status_code = 422
    code = "invalid_input"


class Unauthenticated(BerthError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(BerthError):
    status_code = 403
    code = "forbidden"


class NotFound(BerthError):
    status_code = 404
    code = "not_found"


class Conflict(BerthError):
    status_code = 409
    code = "conflict"


class CapacityError(Conflict):
    code = "over_capacity"
