"""Check a response against what /api/v1.0/openapi.json documents for its path, method and status."""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator

_ID = re.compile(r"/(\d+)/$")


def template(doc: dict[str, Any], path: str) -> str:
    """The documented path template a concrete path falls under."""
    path = path.split("?", 1)[0]
    if path in doc["paths"]:
        return path
    candidate = _ID.sub("/{id}/", path)
    assert candidate in doc["paths"], f"{path} is not documented"
    return candidate


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node and node["$ref"].startswith("#/components/responses/"):
        node = doc["components"]["responses"][node["$ref"].rsplit("/", 1)[1]]
    return node


def check_response(doc: dict[str, Any], method: str, path: str, status: int, body: bytes, data: Any) -> None:
    """Assert `status` is documented for the operation and the body has the documented shape."""
    operation = doc["paths"][template(doc, path)][method.lower()]
    documented = operation["responses"]
    assert str(status) in documented, f"{method} {path}: {status} is not documented ({sorted(documented)})"
    response = _resolve(doc, documented[str(status)])
    content = response.get("content")
    if content is None:
        assert body == b"", f"{method} {path} {status}: documented without a body, got {body[:200]!r}"
        return
    schema = {**content["application/json"]["schema"], "components": doc["components"]}
    Draft202012Validator(schema).validate(data)
