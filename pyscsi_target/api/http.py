"""HTTP mechanics shared by every endpoint: JSON responses, error bodies and request bodies.

Responses are JSON with sorted keys, `Content-Type: application/json` and `Vary: Accept` (spec
Part A §1.4, Part B §B.1.1). Request bodies are read as JSON whatever their Content-Type says
(Part B §B.1.5). The error bodies are the three documented shapes: 409 `{"field": ["msg"]}`,
400/405/413/429 `{"error": "text"}`, and an empty 401/404.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response, current_app, request

#: Largest request body accepted, in bytes; configurations are small (our choice).
MAX_BODY_BYTES = 1 << 20


class BadRequest(Exception):
    """The request cannot be understood: answered 400 `{"error": message}`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return json_text_response(json.dumps(data, sort_keys=True), status, headers)


def json_text_response(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A response of JSON already encoded as `json_response` encodes it."""
    response: Response = current_app.response_class(body, status=status, content_type="application/json")
    response.headers["Vary"] = "Accept"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def empty_response(status: int, headers: dict[str, str] | None = None) -> Response:
    response: Response = current_app.response_class(b"", status=status)
    del response.headers["Content-Type"]  # no body, no media type
    response.headers["Vary"] = "Accept"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def conflict(errors: dict[str, list[str]]) -> Response:
    """A refused change: 409 with Django's field errors (spec Part B §B.1.2)."""
    return json_response(errors, 409)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_object() -> dict[str, Any]:
    """The request body as a JSON object; an empty body is {}. Raises BadRequest otherwise."""
    raw = await request.get_data(as_text=False)
    assert isinstance(raw, bytes)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    try:  # "\ud800" escapes decode to lone surrogates, which are not text (RFC 8259 §8.2)
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("The request body is not valid JSON: it contains an unpaired surrogate.") from None
    return data
