"""OpenAI-style error responses of the gateway."""

import orjson
from starlette.responses import Response


def openai_error(
    status: int,
    message: str,
    *,
    code: str,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )
