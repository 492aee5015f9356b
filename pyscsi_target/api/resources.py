"""The seven collection resources under /services/iscsi/: URL name, model collection, fields, hooks.

A `Resource` ties a field table to a `Config` collection: how to make a blank model object, how
request values that need more than a plain attribute write land on the model (`load`), and the
default list order (spec Part A §1.3: extent and target by name, target-to-extent by target name
then LUN, the others by id). Everything else is generic (api/crud.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..model.addresses import AddressError, parse_portal_address
from ..model.config import (
    EXTENT_FILE,
    AuthCredential,
    Config,
    Extent,
    InitiatorGroup,
    LunMapping,
    Portal,
    Target,
    TargetGroup,
)
from ..model.edits import LUN_AUTO
from ..model.kinds import PATH, kind_for
from . import tables
from .fields import MSG_REQUIRED, Errors, Field, assign


@dataclass(frozen=True)
class Resource:
    name: str  # URL segment under /services/iscsi/
    collection: str  # Config attribute
    title: str  # OpenAPI schema name
    fields: tuple[Field, ...]
    blank: Callable[[int], Any]
    order: Callable[[Config, Any], tuple[Any, ...]]
    #: extra input mapping after the plain attribute writes: (object, values, created) -> errors
    load: Callable[[Any, dict[str, Any], bool], Errors] | None = None

    def write(self, obj: Any, values: dict[str, Any], *, created: bool) -> Errors:
        assign(self.fields, obj, values)
        return self.load(obj, values, created) if self.load else {}


def _by_id(_cfg: Config, obj: Any) -> tuple[Any, ...]:
    return (obj.id,)


def _by_name(_cfg: Config, obj: Any) -> tuple[Any, ...]:
    return (obj.name, obj.id)


def _mapping_order(cfg: Config, m: LunMapping) -> tuple[Any, ...]:
    target = cfg.targets.get(m.target)
    return (target.name if target else "", m.lunid, m.id)


def _load_extent(ext: Extent, values: dict[str, Any], created: bool) -> Errors:
    """Turning a device extent into one of a kind whose storage is named by its path (File)
    needs a path: the old one is the device's."""
    kind = kind_for(values.get("iscsi_target_extent_type"))
    named_by_path = kind is not None and kind.location == PATH
    if named_by_path and "iscsi_target_extent_path" not in values and not created and ext.disk:
        return {"iscsi_target_extent_path": [MSG_REQUIRED]}
    return {}


def _load_mapping(mapping: LunMapping, values: dict[str, Any], created: bool) -> Errors:
    if "iscsi_lunid" in values:
        lunid = values["iscsi_lunid"]
        mapping.lunid = LUN_AUTO if lunid is None else lunid
    return {}


def _load_portal(portal: Portal, values: dict[str, Any], created: bool) -> Errors:
    if "iscsi_target_portal_ips" not in values:
        return {}
    errors: Errors = {}
    addresses = []
    for entry in values["iscsi_target_portal_ips"]:
        try:
            addresses.append(parse_portal_address(entry))
        except AddressError as exc:
            errors.setdefault(exc.field, []).append(exc.message)
    portal.ips = addresses
    return errors


RESOURCES: tuple[Resource, ...] = (
    Resource("globalconfiguration", "global", "GlobalConfiguration", tables.GLOBAL,
             blank=lambda _oid: None, order=_by_id),
    Resource("extent", "extents", "Extent", tables.EXTENT,
             blank=lambda oid: Extent(oid, name="", type=EXTENT_FILE, path=""),
             order=_by_name, load=_load_extent),
    Resource("authorizedinitiator", "initiators", "AuthorizedInitiator", tables.INITIATOR,
             blank=lambda oid: InitiatorGroup(oid, tag=0), order=_by_id),
    Resource("authcredential", "auths", "AuthCredential", tables.AUTH,
             blank=lambda oid: AuthCredential(oid, tag=1, user="", secret=""), order=_by_id),
    Resource("target", "targets", "Target", tables.TARGET,
             blank=lambda oid: Target(oid, name=""), order=_by_name),
    Resource("targetgroup", "targetgroups", "TargetGroup", tables.TARGETGROUP,
             blank=lambda oid: TargetGroup(oid, target=0, portalgroup=0), order=_by_id),
    Resource("targettoextent", "mappings", "TargetToExtent", tables.MAPPING,
             blank=lambda oid: LunMapping(oid, target=0, extent=0, lunid=LUN_AUTO),
             order=_mapping_order, load=_load_mapping),
    Resource("portal", "portals", "Portal", tables.PORTAL,
             blank=lambda oid: Portal(oid, tag=0), order=_by_id, load=_load_portal),
)

GLOBAL_RESOURCE = RESOURCES[0]
COLLECTION_RESOURCES = RESOURCES[1:]
