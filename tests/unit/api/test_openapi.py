"""The OpenAPI document: complete for the routes, valid JSON Schema, and true to real responses.

The property test sends Hypothesis-generated bodies and queries (well-formed, half-formed and
garbage values for every documented field) to every endpoint and checks that no answer is a 500,
that every status is documented for its operation, and that every body matches its schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from pyscsi_target.api.openapi import openapi_document

from . import builders as b
from .conftest import Api, P, make_api
from .schema import check_response

DOC = openapi_document("test")
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _documented_routes() -> set[tuple[str, str]]:
    return {(path, m.upper()) for path, item in DOC["paths"].items() for m in item if m.upper() in METHODS}


async def test_every_route_is_documented_and_every_documented_route_exists(api: Api) -> None:
    served = set()
    for rule in api.app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<int:oid>", "{id}")
        served |= {(path, m) for m in rule.methods or () if m in METHODS}
    assert served == _documented_routes()


async def test_the_served_document_is_the_generated_one(api: Api) -> None:
    served = await api.ok("GET", "/api/v1.0/openapi.json")
    assert served == json.loads(json.dumps(openapi_document("9.9.9")))
    assert served["openapi"].startswith("3.1")


def test_every_schema_is_valid_json_schema() -> None:
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_response_schemas_list_every_field_and_forbid_others() -> None:
    extent = DOC["components"]["schemas"]["Extent"]
    assert "iscsi_target_extent_disk" not in extent["properties"]  # input only
    assert extent["additionalProperties"] is False
    assert set(extent["required"]) == set(extent["properties"])
    assert "iscsi_target_extent_disk" in DOC["components"]["schemas"]["ExtentCreate"]["properties"]
    assert DOC["components"]["schemas"]["TargetToExtent"]["properties"]["iscsi_lunid"]["type"] == "integer"
    assert DOC["components"]["schemas"]["TargetToExtentCreate"]["properties"]["iscsi_lunid"]["type"] == [
        "integer", "null"]


async def test_examples_from_the_published_docs_match_the_schemas(api: Api) -> None:
    await b.portal(api)
    await b.target(api)
    await b.extent(api, "e")
    await b.group(api, 1, 1)
    await b.mapping(api, 1, 1)
    await b.credential(api)
    await b.initiator(api)
    for path in ["/api/v1.0/system/version/", "/api/v1.0/services/services/iscsitarget/",
                 f"{P}/globalconfiguration/", f"{P}/sessions/"] + [
                 f"{P}/{name}/" for name in ("portal", "target", "extent", "targetgroup", "targettoextent",
                                             "authcredential", "authorizedinitiator")]:
        response = await api.call("GET", path)
        check_response(DOC, "GET", path, response.status_code, await response.get_data(), await response.get_json())


# ---- property-based: no 500s, no undocumented answers ----------------------------------------

_WRITABLE = {
    name: sorted(schema["properties"])
    for name, schema in DOC["components"]["schemas"].items()
    if name.endswith("Create") or name.endswith("Update")
}

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 99, 100, 512, 4096, 1023, 1024, 65535, 65536, 3260]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "ALL", "File", "Disk", "ZVOL", "CHAP", "CHAP Mutual", "None", "SSD", "10MB", "0",
                     "zvol/tank/v", "0.0.0.0:3260", "[::1]:3260", "iqn.2005-10.org.x:t", "a\x00b", 'q"q',
                     "secretsecret12", "../../etc", "/etc/passwd", "10.0.0.0/8", "x" * 200, "\ud800"]),
)
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3), st.dictionaries(st.text(max_size=5), _scalars,
                                                                              max_size=2))


@st.composite
def _body(draw: st.DrawFn, schema_name: str, roots: str) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(_WRITABLE[schema_name]), unique=True))
    body = {k: draw(_values) for k in keys}
    if "iscsi_target_extent_path" in body and draw(st.booleans()):
        body["iscsi_target_extent_path"] = roots + "/" + draw(st.sampled_from(["a.img", "d/b.img", "", "x/"]))
    if draw(st.booleans()):
        body[draw(st.text(max_size=8))] = draw(_values)
    return body


_QUERY = st.lists(
    st.tuples(
        st.sampled_from(["limit", "offset", "sort(id)", "sort(-iscsi_target_name)", "order_by", "format", "id",
                         "iscsi_target", "iscsi_lunid", "iscsi_target_alias", "nope", "iscsi_target_portal_ips"]),
        st.sampled_from(["", "0", "1", "-1", "x", "null", "json", "xml", "-id", "id", "2", "99999999999999999999"]),
    ),
    max_size=3,
)

_COLLECTIONS = ["portal", "authorizedinitiator", "authcredential", "target", "targetgroup", "extent",
                "targettoextent"]
_TITLES = {"portal": "Portal", "authorizedinitiator": "AuthorizedInitiator", "authcredential": "AuthCredential",
           "target": "Target", "targetgroup": "TargetGroup", "extent": "Extent",
           "targettoextent": "TargetToExtent"}


async def _send(api: Api, method: str, path: str, body: Any = None, query: str = "") -> None:
    data = None if body is None else json.dumps(body).encode()
    response = await api.call(method, path + query, data=data)
    raw = await response.get_data()
    assert response.status_code != 500, raw
    parsed = json.loads(raw) if raw else None
    check_response(DOC, method, path, response.status_code, raw, parsed)


async def _seed(api: Api) -> None:
    await b.portal(api)
    await b.target(api)
    await b.extent(api, "seed")
    await b.credential(api)
    await b.initiator(api)
    await b.group(api, 1, 1)
    await b.mapping(api, 1, 1)


_settings = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_settings
@given(data=st.data())
async def test_writes_never_500_and_answer_as_documented(tmp_path: Path, data: st.DataObject) -> None:
    api = make_api(tmp_path)
    await _seed(api)
    name = data.draw(st.sampled_from(_COLLECTIONS))
    title = _TITLES[name]
    roots = str(api.roots)
    await _send(api, "POST", f"{P}/{name}/", data.draw(_body(title + "Create", roots)))
    oid = data.draw(st.sampled_from([1, 2, 7]))
    method = data.draw(st.sampled_from(["PUT", "PATCH"]))
    await _send(api, method, f"{P}/{name}/{oid}/", data.draw(_body(title + "Update", roots)))
    await _send(api, "PUT", f"{P}/globalconfiguration/", data.draw(_body("GlobalConfigurationUpdate", roots)))
    await _send(api, "PUT", "/api/v1.0/services/services/iscsitarget/", data.draw(_body("ServiceUpdate", roots)))
    for listed in _COLLECTIONS:
        await _send(api, "GET", f"{P}/{listed}/")
    await _send(api, "DELETE", f"{P}/{name}/{oid}/")


@_settings
@given(data=st.data())
async def test_list_queries_never_500_and_answer_as_documented(tmp_path: Path, data: st.DataObject) -> None:
    api = make_api(tmp_path)
    await _seed(api)
    for name in (*_COLLECTIONS, "sessions"):
        pairs = data.draw(_QUERY)
        query = "?" + "&".join(f"{k}={v}" if v or "sort(" not in k else k for k, v in pairs) if pairs else ""
        await _send(api, "GET", f"{P}/{name}/", query=query)
