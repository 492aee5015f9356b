"""The generic endpoints of the iSCSI resources: list, create, detail, partial update, delete.

Every write follows the seam (ARCHITECTURE.md, model/control.py): under the write lock, take a
draft of the snapshot (model/draft.py: O(change), not a copy of the configuration), change it,
validate it (409 with field errors), `await control.apply(draft)` (409 when the live target
refuses) and answer from the new snapshot. Status codes and bodies are spec
Part B §B.1.2; PUT and PATCH are both partial updates (§B.1.3); deletes cascade (§B.2.3), except that an
authorized initiator still used by a target group is not deleted (409, docs/api.md).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from ..model import edits
from ..model.config import Config
from ..model.validation import validate
from .fields import Errors, Field, coerce, serialize
from .http import conflict, empty_response, json_response, json_text_response, read_object
from .listing import Page, RowCache, paginate, plain_window
from .resources import GLOBAL_RESOURCE, Resource
from .state import ApiState, api_state

API_PREFIX = "/api/v1.0"
ISCSI_PREFIX = API_PREFIX + "/services/iscsi"
LIST_METHODS = ["GET", "POST"]
DETAIL_METHODS = ["GET", "PUT", "PATCH", "DELETE"]
SINGLETON_METHODS = ["GET", "PUT"]


def list_response(fields: tuple[Field, ...], objects: list[Any]) -> Response:
    rows = [serialize(fields, o) for o in objects]
    page = paginate(fields, rows, request.args, request.headers.get("Range"))
    return json_response(page.items, headers={"Content-Range": page.content_range})


def _merge(first: Errors, second: Errors) -> Errors:
    for key, messages in second.items():
        first.setdefault(key, []).extend(m for m in messages if m not in first.get(key, []))
    return first


async def _save(
    state: ApiState, res: Resource, cfg: Config, obj: Any, values: dict[str, Any], created: bool
) -> Response | None:
    """Write `values` onto `obj` (in `cfg`), validate and apply: a 409 Response, or None when saved."""
    errors = res.write(obj, values, created=created)
    if not errors:
        errors = _merge(errors, validate(cfg, res.collection, obj, state.context))
    if errors:
        return conflict(errors)
    return await state.commit(cfg)


def _current(state: ApiState, res: Resource, oid: int, fallback: Any) -> Any:
    """The object as the target now serves it (the applied snapshot), else what we sent."""
    return getattr(state.control.snapshot(), res.collection).get(oid, fallback)


async def _create(res: Resource) -> Response:
    body = await read_object()
    state = api_state()
    async with state.lock:
        cfg = state.control.snapshot().draft()
        values, errors = coerce(res.fields, body, partial=False)
        if errors:
            return conflict(errors)
        oid = cfg.new_id(res.collection)
        obj = res.blank(oid)
        getattr(cfg, res.collection)[oid] = obj
        refused = await _save(state, res, cfg, obj, values, created=True)
        if refused is not None:
            return refused
        out = _current(state, res, oid, obj)
    location = f"{request.host_url.rstrip('/')}{ISCSI_PREFIX}/{res.name}/{oid}/"
    return json_response(serialize(res.fields, out), 201, {"Location": location})


async def _update(res: Resource, oid: int) -> Response:
    body = await read_object()
    state = api_state()
    async with state.lock:
        cfg = state.control.snapshot().draft()
        obj = getattr(cfg, res.collection).get(oid)
        if obj is None:
            return empty_response(404)
        values, errors = coerce(res.fields, body, partial=True)
        if errors:
            return conflict(errors)
        refused = await _save(state, res, cfg, obj, values, created=False)
        if refused is not None:
            return refused
        out = _current(state, res, oid, obj)
    return json_response(serialize(res.fields, out))


async def _delete(res: Resource, oid: int) -> Response:
    state = api_state()
    async with state.lock:
        cfg = state.control.snapshot().draft()
        if oid not in getattr(cfg, res.collection):
            # Removed by a cascade a moment ago: already gone, as asked (spec Part B §B.2.3).
            return empty_response(204 if state.cascaded.recent(res.collection, oid) else 404)
        try:
            removed = edits.delete(cfg, res.collection, oid)
        except edits.InUse as exc:  # an ACL still in use: deleting it would open targets
            return conflict(exc.errors)
        refused = await state.commit(cfg)
        if refused is not None:
            return refused
        state.cascaded.remember(removed)
    return empty_response(204)


def collection_blueprint(res: Resource) -> Blueprint:
    """`/services/iscsi/<name>/` (GET list, POST) and `/<name>/<id>/` (GET, PUT, PATCH, DELETE)."""
    bp = Blueprint(res.name, __name__, url_prefix=f"{ISCSI_PREFIX}/{res.name}")

    async def collection() -> Response:
        if request.method == "POST":
            return await _create(res)
        state = api_state()
        snapshot = state.control.snapshot()
        objects = sorted(getattr(snapshot, res.collection).values(), key=lambda o: res.order(snapshot, o))
        cache = state.rows.setdefault(res.name, RowCache(res.fields))
        window = plain_window(res.fields, request.args, request.headers.get("Range"))
        if window is None:  # filtered or sorted: every row is needed
            page = paginate(res.fields, cache.rows(objects, len(objects)), request.args,
                            request.headers.get("Range"))
            return json_response(page.items, headers={"Content-Range": page.content_range})
        # only paged: the page alone, from the rows' kept JSON texts (issue #12)
        offset, limit = window
        cut = objects[offset:None if limit is None else offset + limit]
        content_range = Page(cut, offset, len(objects)).content_range
        return json_text_response(cache.json_text(cut, len(objects)), headers={"Content-Range": content_range})

    async def detail(oid: int) -> Response:
        if request.method in ("PUT", "PATCH"):
            return await _update(res, oid)
        if request.method == "DELETE":
            return await _delete(res, oid)
        obj = getattr(api_state().control.snapshot(), res.collection).get(oid)
        return empty_response(404) if obj is None else json_response(serialize(res.fields, obj))

    bp.add_url_rule("/", "collection", collection, methods=LIST_METHODS, strict_slashes=False)
    bp.add_url_rule("/<int:oid>/", "detail", detail, methods=DETAIL_METHODS, strict_slashes=False)
    return bp


#: The single global configuration object has id 1 (spec Part A §1.1).
GLOBAL_ID = 1


async def _global(oid: int = GLOBAL_ID) -> Response:
    state = api_state()
    res = GLOBAL_RESOURCE
    if oid != GLOBAL_ID:
        return empty_response(404)
    if request.method == "GET":
        return json_response(serialize(res.fields, state.control.snapshot().global_config))
    body = await read_object()
    async with state.lock:
        cfg = state.control.snapshot().draft()
        values, errors = coerce(res.fields, body, partial=True)
        if errors:
            return conflict(errors)
        refused = await _save(state, res, cfg, cfg.global_config, values, created=False)
        if refused is not None:
            return refused
    return json_response(serialize(res.fields, state.control.snapshot().global_config))


def global_blueprint() -> Blueprint:
    """`/services/iscsi/globalconfiguration/` and `/globalconfiguration/1/`: GET and PUT only."""
    bp = Blueprint("globalconfiguration", __name__, url_prefix=f"{ISCSI_PREFIX}/globalconfiguration")
    bp.add_url_rule("/", "singleton", _global, methods=SINGLETON_METHODS, strict_slashes=False)
    bp.add_url_rule("/<int:oid>/", "singleton_id", _global, methods=SINGLETON_METHODS, strict_slashes=False)
    return bp
