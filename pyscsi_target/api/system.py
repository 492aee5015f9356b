"""Endpoints beside the eight resources: version, the iSCSI service switch, live sessions, OpenAPI.

- `GET /system/version/`: the object form Proxmox expects (spec Part B §B.1.7).
- `GET/PUT /services/services/iscsitarget/`: `srv_enable` switches `Config.service.enabled`;
  disabling stops the portals and ends sessions, enabling starts them (§B.1.8).
- `GET /services/iscsi/sessions/`: `control.sessions()` as a list with the usual paging (§B.1.9).
- `GET /openapi.json`: the document generated from the field tables (api/openapi.py).
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from . import tables
from .crud import API_PREFIX, ISCSI_PREFIX, list_response
from .fields import coerce, serialize
from .http import conflict, json_response, read_object
from .openapi import openapi_document
from .state import api_state

PRODUCT = "pyscsi-target"
SERVICE_NAME = "iscsitarget"


async def version() -> Response:
    v = api_state().version
    return json_response({"fullversion": f"{PRODUCT}-{v}", "name": PRODUCT, "version": v})


async def service() -> Response:
    state = api_state()
    if request.method == "PUT":
        body = await read_object()
        async with state.lock:
            cfg = state.control.snapshot().draft()
            values, errors = coerce(tables.SERVICE, body, partial=True)
            if errors:
                return conflict(errors)
            if "srv_enable" in values:
                cfg.service.enabled = values["srv_enable"]
            refused = await state.commit(cfg)
            if refused is not None:
                return refused
    return json_response(serialize(tables.SERVICE, state.control.snapshot().service))


async def sessions() -> Response:
    live = api_state().control.sessions()
    ordered = sorted(live, key=lambda s: (s.target, s.initiator, s.tsih))
    return list_response(tables.SESSION, ordered)


async def openapi() -> Response:
    return json_response(openapi_document(api_state().version))


def system_blueprint() -> Blueprint:
    bp = Blueprint("system", __name__)
    version_url = f"{API_PREFIX}/system/version/"
    bp.add_url_rule(version_url, "version", version, methods=["GET"], strict_slashes=False)
    bp.add_url_rule(
        f"{API_PREFIX}/services/services/{SERVICE_NAME}/",
        "service",
        service,
        methods=["GET", "PUT"],
        strict_slashes=False,
    )
    bp.add_url_rule(f"{ISCSI_PREFIX}/sessions/", "sessions", sessions, methods=["GET"], strict_slashes=False)
    bp.add_url_rule(f"{API_PREFIX}/openapi.json", "openapi", openapi, methods=["GET"])
    return bp
