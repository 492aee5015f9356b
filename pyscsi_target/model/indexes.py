"""Secondary indexes of a committed `Config`: the lookups validation and the target make by value.

Stdlib only. An index maps a key (a target's iSCSI name, an extent's serial, a mapping's target id
...) to the ids of the objects of one collection that have it; an object may have several keys (an
extent's storage names). Validation asks "which other object has this name / this LUN / this
file", the target asks "which groups and LUNs does this target have": with an index both cost
O(1) instead of a scan of the configuration (issue #12: at 10,000 volumes every scan of every
call made the cost of a change grow with the configuration).

`Indexes` belongs to one committed configuration and is kept in step by `add`/`remove` as changes
are folded in (model/draft.py); it remembers the keys each object was indexed under, so removing
never recomputes them. Keys computed from the file system (an extent's st_dev/st_ino) are taken
when the object is committed, after the server created its file; an extent whose file did not
exist then is re-examined at the next storage lookup (`STORAGE`, `refresh_storage`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Config

Keys = Callable[["Config", Any], Iterable[Hashable]]


@dataclass(frozen=True)
class IndexSpec:
    """One index: its collection, the keys of an object, and whether the keys depend on the
    global configuration (the basename: a basename change re-indexes)."""

    collection: str
    keys: Keys
    uses_global: bool = False


def _target_iqn(cfg: Config, t: Any) -> Iterable[Hashable]:
    return (cfg.target_iqn(t).lower(),)


def _alias(_cfg: Config, t: Any) -> Iterable[Hashable]:
    return (t.alias,) if t.alias is not None else ()


def _attr(name: str) -> Keys:
    def keys(_cfg: Config, obj: Any) -> Iterable[Hashable]:
        value = getattr(obj, name)
        return (value,) if value is not None else ()
    return keys


def _mutual_tag(method: str, group: str) -> Keys:
    def keys(_cfg: Config, obj: Any) -> Iterable[Hashable]:
        from .config import AUTH_CHAP_MUTUAL

        tag = getattr(obj, group)
        return (tag,) if getattr(obj, method) == AUTH_CHAP_MUTUAL and tag is not None else ()
    return keys


def storage_names(_cfg: Config, ext: Any) -> Iterable[Hashable]:
    """The names of an extent's storage (its kind's: resolved path, file or device identity)."""
    from .kinds import kind_for

    kind = kind_for(ext.type)
    return kind.names(ext) if kind is not None and ext.path else ()


#: the extent storage index (issue #10 item 3: one storage, one extent)
STORAGE = "extent_storage"

SPECS: dict[str, IndexSpec] = {
    "target_iqn": IndexSpec("targets", _target_iqn, uses_global=True),
    "target_alias": IndexSpec("targets", _alias),
    "extent_name": IndexSpec("extents", _attr("name")),
    "extent_serial": IndexSpec("extents", _attr("serial")),
    "extent_naa": IndexSpec("extents", _attr("naa")),
    STORAGE: IndexSpec("extents", storage_names),
    "group_target": IndexSpec("targetgroups", _attr("target")),
    "group_portal": IndexSpec("targetgroups", _attr("portalgroup")),
    "group_initiator": IndexSpec("targetgroups", _attr("initiatorgroup")),
    "group_mutual_tag": IndexSpec("targetgroups", _mutual_tag("authtype", "authgroup")),
    "portal_mutual_tag": IndexSpec("portals", _mutual_tag("discoveryauthmethod", "discoveryauthgroup")),
    "mapping_target": IndexSpec("mappings", _attr("target")),
    "mapping_extent": IndexSpec("mappings", _attr("extent")),
    "auth_tag": IndexSpec("auths", _attr("tag")),
}
#: index names by collection
BY_COLLECTION: dict[str, tuple[str, ...]] = {}
for _name, _spec in SPECS.items():
    BY_COLLECTION[_spec.collection] = (*BY_COLLECTION.get(_spec.collection, ()), _name)


def has_identity(keys: Iterable[Hashable]) -> bool:
    """True if an extent's storage names include its file's identity (the file existed)."""
    return any(isinstance(k, tuple) and k and k[0] != "path" for k in keys)


class Indexes:
    """Every index of one committed configuration."""

    def __init__(self) -> None:
        self._ids: dict[str, dict[Hashable, set[int]]] = {name: {} for name in SPECS}
        #: index -> object id -> the keys it is indexed under
        self._keys: dict[str, dict[int, tuple[Hashable, ...]]] = {name: {} for name in SPECS}
        #: extents indexed before their file existed: their identity is looked up again
        self.unresolved: set[int] = set()

    @classmethod
    def of(cls, cfg: Config) -> Indexes:
        from .extents import resolving

        idx = cls()
        with resolving():  # every extent's path is resolved: its folder once (issue #12)
            for collection in BY_COLLECTION:
                for obj in getattr(cfg, collection).values():
                    idx.add(cfg, collection, obj)
        return idx

    def add(self, cfg: Config, collection: str, obj: Any) -> None:
        for name in BY_COLLECTION.get(collection, ()):
            keys = tuple(SPECS[name].keys(cfg, obj))
            self._keys[name][obj.id] = keys
            table = self._ids[name]
            for key in keys:
                table.setdefault(key, set()).add(obj.id)
            if name == STORAGE and not has_identity(keys):
                self.unresolved.add(obj.id)

    def remove(self, collection: str, oid: int) -> None:
        for name in BY_COLLECTION.get(collection, ()):
            table = self._ids[name]
            for key in self._keys[name].pop(oid, ()):
                ids = table.get(key)
                if ids is not None:
                    ids.discard(oid)
                    if not ids:
                        del table[key]
        if collection == SPECS[STORAGE].collection:
            self.unresolved.discard(oid)

    def rekey(self, cfg: Config) -> None:
        """Index again what depends on the global configuration (a basename change)."""
        for collection in {spec.collection for spec in SPECS.values() if spec.uses_global}:
            for obj in getattr(cfg, collection).values():
                self.remove(collection, obj.id)
                self.add(cfg, collection, obj)

    def ids(self, name: str, key: Hashable) -> set[int]:
        """The ids indexed under `key` (do not mutate the set)."""
        return self._ids[name].get(key, _EMPTY)

    def refresh_storage(self, cfg: Config) -> None:
        """Index again the extents whose file did not exist when they were indexed."""
        for oid in list(self.unresolved):
            ext = cfg.extents.get(oid)
            self.remove("extents", oid)
            if ext is not None:
                self.add(cfg, "extents", ext)


_EMPTY: set[int] = set()
