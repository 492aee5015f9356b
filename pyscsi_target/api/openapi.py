"""The OpenAPI 3.1 document of the API, generated from the same field tables the handlers use.

Every endpoint, every field (type, null, choices, limits, default, read-only/write-only), every
status code and every error body (`ValidationErrors` for 409, `Error` for 400/405/413/429, empty
401/404) is derived here from api/tables.py and api/resources.py, so it cannot drift from what
the handlers do (spec Part B §B.1.9). Schemas are JSON Schema 2020-12, as OpenAPI 3.1 uses.
"""

from __future__ import annotations

from typing import Any

from . import tables
from .audit import LOG_LEVELS
from .crud import API_PREFIX, DETAIL_METHODS, ISCSI_PREFIX
from .fields import BOOLEAN, INTEGER, OBJECT, STRING, STRING_LIST, Field
from .listing import DEFAULT_LIMIT
from .resources import COLLECTION_RESOURCES, GLOBAL_RESOURCE, Resource

_TYPES: dict[str, dict[str, Any]] = {
    STRING: {"type": "string"},
    INTEGER: {"type": "integer"},
    BOOLEAN: {"type": "boolean"},
    STRING_LIST: {"type": "array", "items": {"type": "string"}},
    OBJECT: {"type": "object", "additionalProperties": {"type": "string"}},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def field_schema(field: Field, *, output: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {**_TYPES[field.kind], "description": field.description}
    if field.choices is not None:
        schema["enum"] = list(field.choices)
    if field.minimum is not None:
        schema["minimum"] = field.minimum
    if field.maximum is not None:
        schema["maximum"] = field.maximum
    if not output and field.max_length is not None:
        schema["maxLength"] = field.max_length
    if not output and not field.required:
        schema["default"] = field.default
    if field.null_in_output if output else field.nullable:
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"].append(None)
    if field.read_only:
        schema["readOnly"] = True
    if field.write_only:
        schema["writeOnly"] = True
    return schema


def object_schema(fields: tuple[Field, ...]) -> dict[str, Any]:
    """A response object: every readable field, always present, nothing else."""
    shown = [f for f in fields if not f.write_only]
    return {
        "type": "object",
        "properties": {f.name: field_schema(f, output=True) for f in shown},
        "required": [f.name for f in shown],
        "additionalProperties": False,
    }


def input_schema(fields: tuple[Field, ...], *, create: bool) -> dict[str, Any]:
    """A request body: the writable fields; unknown keys are ignored, so they are allowed."""
    writable = [f for f in fields if not f.read_only]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: field_schema(f, output=False) for f in writable},
    }
    if create:
        schema["required"] = [f.name for f in writable if f.required]
    return schema


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _error(description: str, **headers: str) -> dict[str, Any]:
    out = {"description": description, **_json(_ref("Error"))}
    if headers:
        out["headers"] = {k: {"schema": {"type": "string"}, "description": v} for k, v in headers.items()}
    return out


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
            "additionalProperties": False,
        },
        "ValidationErrors": {
            "type": "object",
            "description": 'Django-style field errors: {"<field>": ["message", ...], "__all__": [...]}.',
            "additionalProperties": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "minProperties": 1,
        },
        "Service": object_schema(tables.SERVICE),
        "ServiceUpdate": input_schema(tables.SERVICE, create=False),
        "Session": object_schema(tables.SESSION),
        "Version": object_schema(tables.VERSION),
        "GlobalConfiguration": object_schema(GLOBAL_RESOURCE.fields),
        "GlobalConfigurationUpdate": input_schema(GLOBAL_RESOURCE.fields, create=False),
    }
    for res in COLLECTION_RESOURCES:
        schemas[res.title] = object_schema(res.fields)
        schemas[res.title + "Create"] = input_schema(res.fields, create=True)
        schemas[res.title + "Update"] = input_schema(res.fields, create=False)
    responses = {
        "BadRequest": _error("Malformed JSON, a bad limit/offset, an unknown query key or format."),
        "Unauthorized": {
            "description": "Missing or wrong credentials (empty body).",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        },
        "TooManyRequests": _error("Too many failed logins from this address.", **{"Retry-After": "Seconds."}),
        "NotFound": {"description": "No such object (empty body)."},
        "Conflict": {"description": "Validation failed or the change could not be applied.",
                     **_json(_ref("ValidationErrors"))},
        "TooLarge": _error("The request body is too large."),
    }
    security = {"basicAuth": {"type": "http", "scheme": "basic", "description": "User root."}}
    return {"schemas": schemas, "responses": responses, "securitySchemes": security}


def _common(*codes: str) -> dict[str, Any]:
    """Error responses: 400, 401 and 429 can answer any request, plus the `codes` given."""
    codes = ("400", "401", "429", *codes)
    names = {"400": "BadRequest", "401": "Unauthorized", "404": "NotFound", "409": "Conflict",
             "413": "TooLarge", "429": "TooManyRequests"}
    return {code: {"$ref": f"#/components/responses/{names[code]}"} for code in codes}


def _list_parameters(fields: tuple[Field, ...]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": "limit", "in": "query", "description": "Page size; 0 = all.",
         "schema": {"type": "integer", "minimum": 0, "default": DEFAULT_LIMIT}},
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
        {"name": "order_by", "in": "query", "schema": {"type": "string"},
         "description": "Comma-separated fields, - for descending. The Dojo form ?sort(-f1,f2) also works."},
        {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json"]}},
        {"name": "Range", "in": "header", "schema": {"type": "string"},
         "description": "Dojo paging, items=<first>-<last>, used when limit is absent."},
    ]
    for f in fields:
        if not f.write_only and f.kind != OBJECT:
            params.append({"name": f.name, "in": "query", "schema": {"type": "string"},
                           "description": "Exact-match filter (null matches null)."})
    return params


def _list_op(summary: str, fields: tuple[Field, ...], item: str) -> dict[str, Any]:
    ok = {"description": "A page of objects.", **_json({"type": "array", "items": _ref(item)}),
          "headers": {"Content-Range": {"schema": {"type": "string"}, "description": "items a-b/total"}}}
    return {"summary": summary, "parameters": _list_parameters(fields),
            "responses": {"200": ok, **_common()}}


def _collection_paths(res: Resource) -> dict[str, Any]:
    base = f"{ISCSI_PREFIX}/{res.name}/"
    created = {"description": "Created.", **_json(_ref(res.title)),
               "headers": {"Location": {"schema": {"type": "string"}}}}
    body = {"required": False, **_json(_ref(res.title + "Update"))}
    update = {"summary": f"Partial update of a {res.title}.", "requestBody": body,
              "responses": {"200": {"description": "Updated.", **_json(_ref(res.title))},
                            **_common("404", "409", "413")}}
    detail: dict[str, Any] = {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "get": {"summary": f"One {res.title}.", "responses": {
            "200": {"description": "The object.", **_json(_ref(res.title))}, **_common("404")}},
        "put": update,
        "patch": update,
        "delete": {"summary": f"Delete a {res.title} (and what depends on it).", "responses": {
            "204": {"description": "Deleted, or removed by a recent cascade."},
            **_common("404", "409")}},
    }
    assert set(DETAIL_METHODS) == {m.upper() for m in detail if m != "parameters"}
    return {
        base: {
            "get": _list_op(f"List {res.title} objects.", res.fields, res.title),
            "post": {"summary": f"Create a {res.title}.",
                     "requestBody": {"required": True, **_json(_ref(res.title + "Create"))},
                     "responses": {"201": created, **_common("409", "413")}},
        },
        base + "{id}/": detail,
    }


def _singleton(title: str, summary: str, *, writable: bool, by_id: bool = False) -> dict[str, Any]:
    ok = {"description": summary, **_json(_ref(title))}
    missing = ("404",) if by_id else ()
    item: dict[str, Any] = {"get": {"summary": summary, "responses": {"200": ok, **_common(*missing)}}}
    if writable:
        item["put"] = {"summary": f"Partial update: {summary}",
                       "requestBody": {"required": False, **_json(_ref(title + "Update"))},
                       "responses": {"200": ok, **_common(*missing, "409", "413")}}
    if by_id:
        item["parameters"] = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    return item


def openapi_document(version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for res in COLLECTION_RESOURCES:
        paths.update(_collection_paths(res))
    summary = "The global iSCSI configuration (id 1)."
    paths[f"{ISCSI_PREFIX}/globalconfiguration/"] = _singleton("GlobalConfiguration", summary, writable=True)
    paths[f"{ISCSI_PREFIX}/globalconfiguration/{{id}}/"] = _singleton(
        "GlobalConfiguration", summary, writable=True, by_id=True
    )
    paths[f"{API_PREFIX}/services/services/iscsitarget/"] = _singleton(
        "Service", "The iSCSI service switch.", writable=True
    )
    paths[f"{ISCSI_PREFIX}/sessions/"] = {"get": _list_op("Live iSCSI sessions.", tables.SESSION, "Session")}
    paths[f"{ISCSI_PREFIX}/sessions/{{id}}/"] = {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "delete": {"summary": "End a session: AsyncEvent logout request, then close.", "responses": {
            "204": {"description": "The session has ended."}, **_common("404")}}}
    level = {"type": "object", "properties": {"level": {"type": "string", "enum": list(LOG_LEVELS)}}}
    paths[f"{API_PREFIX}/system/loglevel/"] = {
        "get": {"summary": "The log level.", "responses": {"200": {"description": "The level.", **_json(level)},
                                                           **_common()}},
        "put": {"summary": "Change the log level until SIGHUP or restart.",
                "requestBody": {"required": True, **_json(level)},
                "responses": {"200": {"description": "The new level.", **_json(level)}, **_common("409", "413")}}}
    paths["/metrics"] = {"get": {
        "summary": "Statistics in the Prometheus text format (no credentials with --metrics-public).",
        "responses": {"200": {"description": "Prometheus exposition format 0.0.4.",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}, **_common()}}}
    paths[f"{API_PREFIX}/system/version/"] = _singleton("Version", "Product and version.", writable=False)
    paths[f"{API_PREFIX}/openapi.json"] = {"get": {"summary": "This document.", "responses": {
        "200": {"description": "OpenAPI 3.1 document.", **_json({"type": "object"})}, **_common()}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "pyscsi-target management API (FreeNAS v1.0 iSCSI)", "version": version},
        "security": [{"basicAuth": []}],
        "paths": paths,
        "components": _components(),
    }
