"""The exception tree of the management side.

    BerthError                 any error a caller can act on; carries an HTTP status
    ├── InvalidInput           400/422: a value is wrong; names the field and the value
    ├── InvalidJSON            400: the request body is not UTF-8 or not valid JSON
    ├── RequestTooLarge        413: the request body is larger than the limit
    ├── Unauthenticated        401: missing or unknown credentials
    │   └── UserDisabled       401: a valid platform key of a disabled user
    ├── Forbidden              403: the caller sees the resource but may not act on it
    │   └── TenantDisabled     403: the tenant is disabled, and the caller is no OrgAdmin
    ├── NotFound               404: no such resource, or the caller cannot see it
    ├── Conflict               409: the request clashes with the current state
    │   └── CapacityError      409: more instances than the platform can ever hold
    └── DatabaseBusy           503: concurrent transactions kept the database busy; retry

Handlers translate them into one JSON envelope:
`{"error": {"code": ..., "message": ..., "field": ...}}`, with a Retry-After header when
`retry_after_s` is set. An InvalidInput also lists every invalid field in
`"errors": [{"field": ..., "message": ...}]`, so that a form can show each message next
to its field.
"""

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from berth.descriptions import JSON_ESCAPES

# About the longest value that an error message repeats.
MAX_SHOWN_VALUE_CHARS = 60


class BerthError(Exception):
    status_code = 500
    code = "internal_error"
    # Seconds for the response's Retry-After header, for an error that a retry can fix.
    retry_after_s: int | None = None

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


@dataclass(frozen=True)
class FieldError:
    """The problem with one field of a request."""

    field: str
    message: str


class InvalidInput(BerthError):
    status_code = 422
    code = "invalid_input"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        errors: Sequence[FieldError] = (),
        **details: Any,
    ) -> None:
        super().__init__(message, field=field, **details)
        # One entry per invalid field; an error about one field lists only that field.
        self.errors = list(errors)
        if not self.errors and field is not None:
            self.errors = [FieldError(field, message)]

    @classmethod
    def combine(cls, failures: Sequence["InvalidInput"]) -> "InvalidInput":
        """Merge the errors of several fields into one that lists them all.

        `field` names the first failure's field, so a client that reads only `field`
        still gets one. The message joins every failure's message with "; ".
        """
        if len(failures) == 1:
            return failures[0]
        errors = [error for failure in failures for error in failure.errors]
        message = "; ".join(failure.message for failure in failures)
        return cls(message, field=failures[0].field, errors=errors)

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        if self.errors:
            body["error"]["errors"] = [
                {"field": error.field, "message": error.message} for error in self.errors
            ]
        return body


class InputChecks:
    """Collects the InvalidInput errors of independent checks of one request.

    Each check runs in a `with checks.check():` block, and `raise_failures()` then raises
    one InvalidInput naming every field that failed, instead of only the first one.
    """

    def __init__(self) -> None:
        self.failures: list[InvalidInput] = []

    @contextmanager
    def check(self) -> Iterator[None]:
        """Run the block and record an InvalidInput that it raises. Other errors propagate."""
        try:
            yield
        except InvalidInput as failure:
            self.failures.append(failure)

    def raise_failures(self) -> None:
        """Raise one InvalidInput for all recorded failures; do nothing when there are none."""
        if self.failures:
            raise InvalidInput.combine(self.failures)


class InvalidJSON(BerthError):
    """A request body that is not UTF-8 or not valid JSON."""

    status_code = 400
    code = "invalid_json"


class RequestTooLarge(BerthError):
    """A request body larger than BERTH_MAX_API_REQUEST_BYTES."""

    status_code = 413
    code = "request_too_large"


class Unauthenticated(BerthError):
    status_code = 401
    code = "unauthenticated"


class UserDisabled(Unauthenticated):
    code = "user_disabled"


class Forbidden(BerthError):
    status_code = 403
    code = "forbidden"


class TenantDisabled(Forbidden):
    code = "tenant_disabled"


class NotFound(BerthError):
    status_code = 404
    code = "not_found"


class Conflict(BerthError):
    status_code = 409
    code = "conflict"


class CapacityError(Conflict):
    code = "over_capacity"


class DatabaseBusy(BerthError):
    """A request that failed because concurrent transactions held the database (deadlock,
    serialization failure, lock timeout or a locked SQLite database)."""

    status_code = 503
    code = "database_busy"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, retry_after=retry_after_s)
        self.retry_after_s = retry_after_s


def value_text(value: object) -> str:
    """Show a rejected value as JSON writes it (true, null, "text"), for an error message.

    A string longer than MAX_SHOWN_VALUE_CHARS is cut inside its quotes and followed by
    its length, as in `"abc…", 2100 characters`. Another long value is cut and ends with
    an ellipsis.
    """
    if isinstance(value, str) and len(value) > MAX_SHOWN_VALUE_CHARS:
        start = json.dumps(value[: MAX_SHOWN_VALUE_CHARS - 20], ensure_ascii=False)
        return f'{start[:-1].translate(JSON_ESCAPES)}…", {len(value)} characters'
    try:
        # Separators and bidirectional controls in the value would reorder or break the
        # message where it is shown, so they are written as \u escapes.
        text = json.dumps(value, ensure_ascii=False).translate(JSON_ESCAPES)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > MAX_SHOWN_VALUE_CHARS:
        text = text[: MAX_SHOWN_VALUE_CHARS - 1] + "…"
    return text


def plain_validation_message(error: Mapping[str, Any]) -> str:
    """Word pydantic's message for one invalid value as Berth words its errors.

    `error` is one item of pydantic's ValidationError.errors(). "Input should be greater
    than or equal to 1" becomes "must be greater than or equal to 1", and the "Value
    error, " that pydantic puts before a validator's own message is dropped.
    """
    message = str(error.get("msg") or "invalid value").removeprefix("Value error, ")
    kind = str(error.get("type", ""))
    limits = error.get("ctx") or {}
    if kind == "string_too_long" and "max_length" in limits:
        return f"must be at most {limits['max_length']} characters long"
    if kind == "string_too_short" and "min_length" in limits:
        return f"must be at least {limits['min_length']} characters long"
    if kind.startswith(("datetime_parsing", "datetime_from_date_parsing", "datetime_type")):
        return "must be a date and time in ISO 8601 form, such as 2025-03-01T14:30:00Z"
    if message.startswith("Input should be "):
        return "must be " + message.removeprefix("Input should be ")
    if error.get("type") == "extra_forbidden":
        return "is not a field of this request; leave it out"
    if error.get("type") == "missing":
        return "is required"
    return message
