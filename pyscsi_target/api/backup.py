"""The configuration as a backup document (`pyscsi-target config export/import`, issue #10 item 12).

`export_document` writes every object the way the v1.0 API's GET returns it (ids, tags and NAAs
included, secrets included: it is a backup), keyed by the API's URL names, plus the service switch,
the id counters and a format version. `import_document` reads such a document back through the
API's own input path: each object is coerced by the same field tables as a POST body
(`fields.coerce`, `Resource.write`), placed in a new `Config` with its exported id, and the whole
configuration is then validated by the same rules as an API write (`model.validation.validate`).
It returns the new `Config` only if every object passed; otherwise it raises `ConfigError` whose
keys name the object (`extent/3/iscsi_target_extent_path`), like the field names of a 409 body.

Read-only values that an API client cannot set but that a restore must keep are carried over after
checks of their own: ids (positive, unique), the tags of portals and authorized initiators
(1..65535, unique; they are the portal group tags initiators see) and the extents' NAA (the LUN's
identity for multipath; 16 or 32 hex digits, unique). A missing tag or NAA is assigned as on a POST.
A Disk/ZVOL extent's device, write-only in the API, is taken from its exported path.
"""

from __future__ import annotations

import re
from typing import Any

from ..model.config import Config
from ..model.control import ConfigError
from ..model.indexes import Indexes
from ..model.kinds import DISK, kind_for
from ..model.validation import NON_FIELD, ValidationContext, validate
from . import tables
from .fields import Errors, coerce, serialize
from .resources import COLLECTION_RESOURCES, GLOBAL_RESOURCE, Resource

#: what the document says it is
FORMAT = "pyscsi-target configuration"
#: version of the document layout; import refuses a newer one
FORMAT_VERSION = 1
SERVICE_KEY = "service"
NEXT_IDS_KEY = "next_ids"
#: the read-only tag an import keeps, per collection
_KEPT_TAGS = {"portals": "iscsi_target_portal_tag", "initiators": "iscsi_target_initiator_tag"}
_NAA_RE = re.compile(r"(0x)?([0-9a-f]{16}|[0-9a-f]{32})")


def export_document(cfg: Config, version: str) -> dict[str, Any]:
    """The whole configuration in the API's representation; deterministic (objects by id)."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "pyscsi_target_version": version,
        GLOBAL_RESOURCE.name: serialize(GLOBAL_RESOURCE.fields, cfg.global_config),
        SERVICE_KEY: serialize(tables.SERVICE, cfg.service),
    }
    for res in COLLECTION_RESOURCES:
        objects = getattr(cfg, res.collection)
        stored = tuple(f for f in res.fields if not f.runtime)
        doc[res.name] = [serialize(stored, objects[oid]) for oid in sorted(objects)]
    doc[NEXT_IDS_KEY] = dict(sorted(cfg.next_ids.items()))
    return doc


class _Collector:
    def __init__(self) -> None:
        self.errors: Errors = {}

    def add(self, prefix: str, errors: Errors) -> None:
        for name, messages in errors.items():
            self.errors.setdefault(f"{prefix}/{name}" if prefix else name, []).extend(messages)

    def one(self, key: str, message: str) -> None:
        self.errors.setdefault(key, []).append(message)


def _check_header(doc: Any, out: _Collector) -> bool:
    if not isinstance(doc, dict):
        out.one(NON_FIELD, "The file must hold one JSON object (the output of `config export`).")
        return False
    if doc.get("format") != FORMAT:
        out.one("format", f'Expected "{FORMAT}".')
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        out.one("format_version", f"This program reads format versions 1 to {FORMAT_VERSION}.")
    return not out.errors


def _section(doc: dict[str, Any], key: str, kind: type, out: _Collector) -> Any:
    value = doc.get(key, kind())
    if not isinstance(value, kind):
        out.one(key, f"Expected a JSON {'list' if kind is list else 'object'}.")
        return kind()
    return value


def _as_input(res: Resource, row: dict[str, Any]) -> dict[str, Any]:
    """A GET object as a POST body: a device extent (a kind whose storage input is `disk`, which
    is write-only) names its device through its path."""
    body = dict(row)
    kind = kind_for(body.get("iscsi_target_extent_type")) if res.collection == "extents" else None
    if kind is not None and kind.location == DISK and not body.get("iscsi_target_extent_disk"):
        body["iscsi_target_extent_disk"] = body.get("iscsi_target_extent_path")
    return body


def _positive_int(value: Any, maximum: int | None = None) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= 1
            and (maximum is None or value <= maximum))


def _keep_read_only(res: Resource, obj: Any, row: dict[str, Any], cfg: Config) -> Errors:
    """Carry the exported tag or NAA over, refusing values the API could never have produced."""
    if res.collection in _KEPT_TAGS:
        key = _KEPT_TAGS[res.collection]
        tag = row.get(key)
        if tag is None:
            return {}
        if not _positive_int(tag, tables.TAG_MAX):
            return {key: [f"Ensure this value is a whole number from 1 to {tables.TAG_MAX}."]}
        if any(o.tag == tag for o in getattr(cfg, res.collection).values()):
            return {key: [f"Tag {tag} is used twice."]}
        obj.tag = tag
    elif res.collection == "extents":
        naa = row.get("iscsi_target_extent_naa")
        if naa in (None, ""):
            return {}
        if not isinstance(naa, str) or not _NAA_RE.fullmatch(naa.lower()):
            return {"iscsi_target_extent_naa": ["Expected 16 or 32 hex digits, optionally after 0x."]}
        if any(e.naa.lower() == naa.lower() for e in cfg.extents.values()):
            return {"iscsi_target_extent_naa": ["This NAA is used by another extent."]}
        obj.naa = naa
    return {}


def _load_objects(doc: dict[str, Any], cfg: Config, out: _Collector) -> None:
    for res in COLLECTION_RESOURCES:
        for index, row in enumerate(_section(doc, res.name, list, out)):
            oid = row.get("id") if isinstance(row, dict) else None
            if not isinstance(oid, int) or not _positive_int(oid):
                out.one(f"{res.name}/{index}", "Expected an object with a positive integer id.")
                continue
            prefix = f"{res.name}/{oid}"
            if oid in getattr(cfg, res.collection):
                out.one(f"{prefix}/id", "This id is used twice.")
                continue
            obj = res.blank(oid)
            values, errors = coerce(res.fields, _as_input(res, row), partial=False)
            if not errors:
                errors = res.write(obj, values, created=True) or _keep_read_only(res, obj, row, cfg)
            out.add(prefix, errors)
            getattr(cfg, res.collection)[oid] = obj


def _load_next_ids(doc: dict[str, Any], cfg: Config, out: _Collector) -> None:
    for name, value in _section(doc, NEXT_IDS_KEY, dict, out).items():
        if name not in Config.COLLECTIONS or not _positive_int(value):
            out.one(f"{NEXT_IDS_KEY}/{name}", "Expected a collection name and a positive integer.")
        else:
            cfg.next_ids[name] = value


def import_document(doc: Any, ctx: ValidationContext) -> Config:
    """The `Config` a backup document describes, validated as a whole like API writes; raises
    `ConfigError` (every problem found, keyed `<resource>/<id>/<field>`) if anything is wrong."""
    out = _Collector()
    if not _check_header(doc, out):
        raise ConfigError(out.errors)
    cfg = Config()
    values, errors = coerce(GLOBAL_RESOURCE.fields, _section(doc, GLOBAL_RESOURCE.name, dict, out), partial=False)
    out.add(GLOBAL_RESOURCE.name, errors or GLOBAL_RESOURCE.write(cfg.global_config, values, created=True))
    values, errors = coerce(tables.SERVICE, _section(doc, SERVICE_KEY, dict, out), partial=False)
    out.add(SERVICE_KEY, errors)
    cfg.service.enabled = values.get("srv_enable", cfg.service.enabled)
    _load_objects(doc, cfg, out)
    _load_next_ids(doc, cfg, out)
    if out.errors:  # coercion failed: the rules below would only repeat it
        raise ConfigError(out.errors)
    out.add(GLOBAL_RESOURCE.name, validate(cfg, "global", cfg.global_config, ctx))
    # indexed lookups, each object indexed again once validated (normalised): what a scan of the
    # objects as they are at that moment would find, in O(N) for N objects (issue #12)
    cfg.indexes = Indexes.of(cfg)
    for collection in Config.COLLECTIONS:
        res = next(r for r in COLLECTION_RESOURCES if r.collection == collection)
        for oid, obj in sorted(getattr(cfg, collection).items()):
            out.add(f"{res.name}/{oid}", validate(cfg, collection, obj, ctx))
            cfg.indexes.remove(collection, oid)
            cfg.indexes.add(cfg, collection, obj)
    if out.errors:
        raise ConfigError(out.errors)
    return cfg
