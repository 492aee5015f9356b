"""Endpoints beside the eight resources: version, the iSCSI service switch, live sessions, OpenAPI.

- `GET /system/version/`: the object form Proxmox expects (spec Part B §B.1.7).
- `GET/PUT /services/services/iscsitarget/`: `srv_enable` switches `Config.service.enabled`;
  disabling stops the portals and ends sessions, enabling starts them (§B.1.8).
- `GET /services/iscsi/sessions/`: `control.sessions()` as a list with the usual paging (§B.1.9);
  `DELETE /services/iscsi/sessions/<id>/` ends one (`control.end_session`, issue #13 item 3).
- `GET/PUT /system/loglevel/`: the process's log level, `{"level": "DEBUG"}` (issue #13 item 5).
- `GET /openapi.json`: the document generated from the field tables (api/openapi.py).
"""

from __future__ import annotations

import logging

from quart import Blueprint, Response, request

from . import tables
from .audit import LOG_LEVELS, log_level_change
from .crud import API_PREFIX, ISCSI_PREFIX, list_response
from .fields import coerce, serialize
from .http import conflict, empty_response, json_response, read_object
from .openapi import openapi_document
from .state import api_state, requester

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


async def end_session(oid: int) -> Response:
    """Ask the initiator to log out (AsyncEvent 1), then close the session: 204 once it has
    ended, 404 for an id no live session has."""
    if not await api_state().control.end_session(oid):
        return empty_response(404)
    return empty_response(204)


async def loglevel() -> Response:
    """The root logger's level; PUT `{"level": "<name>"}` changes it until the next SIGHUP or
    restart (both go back to --log-level)."""
    root = logging.getLogger()
    if request.method == "PUT":
        body = await read_object()
        level = body.get("level")
        if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
            return conflict({"level": [f"Choose one of {', '.join(LOG_LEVELS)}."]})
        old, new = logging.getLevelName(root.level), level.upper()
        who, address = requester(), request.remote_addr or "unknown"
        if logging.getLevelNamesMapping()[new] > logging.INFO:
            log_level_change(who, address, old, new)  # still at the old level: the line is kept
            root.setLevel(new)
        else:
            root.setLevel(new)
            log_level_change(who, address, old, new)
    return json_response({"level": logging.getLevelName(root.level)})


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
    bp.add_url_rule(f"{ISCSI_PREFIX}/sessions/<int:oid>/", "end_session", end_session, methods=["DELETE"],
                    strict_slashes=False)
    bp.add_url_rule(f"{API_PREFIX}/system/loglevel/", "loglevel", loglevel, methods=["GET", "PUT"],
                    strict_slashes=False)
    bp.add_url_rule(f"{API_PREFIX}/openapi.json", "openapi", openapi, methods=["GET"])
    return bp
