"""OpenAI-style error responses of the gateway."""

import orjson
from starlette.responses import Response


def openai_error_body(
    message: str,
    *,
    code: str,
    error_type: str = "invalid_request_error",
    param: str | None = None,
) -> bytes:
    """Return the JSON body of an OpenAI-style error."""
    error = {"message": message, "type": error_type, "param": param, "code": code}
    return orjson.dumps({"error": error})


def openai_error(
    status: int,
    message: str,
    *,
    code: str,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = openai_error_body(message, code=code, error_type=error_type, param=param)
    return Response(body, status_code=status, media_type="application/json", headers=headers)
