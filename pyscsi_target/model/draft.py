"""A change to a configuration, built and validated in O(change): `Draft`.

Stdlib only. Issue #12: copying, validating, diffing and persisting the whole configuration at
every API call made each call cost O(configuration), so 10,000 volumes took hours. A `Draft` is a
`Config` whose collections are `Overlay`s over those of the configuration it is based on: reading
falls through to the base, writing and deleting are recorded in the overlay, so a draft costs the
objects it touches, not the configuration. Everything that reads a `Config` reads a draft the same
way (validation, cascades, the derived views), and the value lookups (`Config.find`) combine the
base's indexes with the touched objects' keys, computed live.

Rules for code that edits a draft:
- `draft.<collection>[oid]` and `.get(oid)` return the draft's own copy of the object (made at the
  first read), which may be changed in place; iterating (`values()`, `items()`) yields the base's
  objects for untouched ids, which must NOT be changed (assign a changed copy instead).
- `changes(collection)` is what really changed: id -> new object, or None for a deleted id (an
  object read but left equal to the base is not a change).
- `commit()` folds the change into the base configuration in place, keeping its indexes, and
  returns it: the caller (`TargetControl.apply`) does so only once the change is persisted and
  live, synchronously, so a reader of the served configuration sees the old or the new one.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from .config import Config
from .indexes import SPECS

T = TypeVar("T")


class Overlay(MutableMapping[int, T], Generic[T]):
    """A dict of objects by id recorded on top of a base mapping (the base is never written)."""

    def __init__(self, base: MutableMapping[int, T]) -> None:
        self.base = base
        #: id -> the draft's object, or None where the id was deleted
        self.touched: dict[int, T | None] = {}

    def __getitem__(self, oid: int) -> T:
        if oid in self.touched:
            obj = self.touched[oid]
            if obj is None:
                raise KeyError(oid)
            return obj
        own = copy.deepcopy(self.base[oid])  # the draft's copy: changing it leaves the base alone
        self.touched[oid] = own
        return own

    def __setitem__(self, oid: int, obj: T) -> None:
        self.touched[oid] = obj

    def __delitem__(self, oid: int) -> None:
        if oid not in self:
            raise KeyError(oid)
        self.touched[oid] = None

    def __contains__(self, oid: object) -> bool:
        if oid in self.touched:
            return self.touched[oid] is not None  # type: ignore[index]
        return oid in self.base

    def __iter__(self) -> Iterator[int]:
        for oid in self.base:
            if oid not in self.touched or self.touched[oid] is not None:
                yield oid
        for oid, obj in self.touched.items():
            if obj is not None and oid not in self.base:
                yield oid

    def __len__(self) -> int:
        added = sum(1 for oid, o in self.touched.items() if o is not None and oid not in self.base)
        deleted = sum(1 for oid, o in self.touched.items() if o is None and oid in self.base)
        return len(self.base) + added - deleted

    def values(self) -> Iterator[T]:  # type: ignore[override]
        """Untouched objects are the base's: read them, do not change them."""
        for oid in self:
            obj = self.touched.get(oid)
            yield obj if obj is not None else self.base[oid]

    def items(self) -> Iterator[tuple[int, T]]:  # type: ignore[override]
        for oid in self:
            obj = self.touched.get(oid)
            yield oid, (obj if obj is not None else self.base[oid])

    def changes(self) -> dict[int, T | None]:
        """id -> new object (None: deleted), leaving out objects equal to the base's."""
        out: dict[int, T | None] = {}
        for oid, obj in self.touched.items():
            before = self.base.get(oid)
            if obj is None:
                if before is not None:
                    out[oid] = None
            elif before is None or before != obj:
                out[oid] = obj
        return out


class Draft(Config):
    """A change to `base`, readable as the whole configuration it would make."""

    def __init__(self, base: Config) -> None:
        super().__init__(copy.deepcopy(base.global_config), copy.deepcopy(base.service),
                         next_ids=dict(base.next_ids))
        self.base = base
        #: the changes, frozen by commit() (the base holds them afterwards)
        self._committed: dict[str, dict[int, Any]] | None = None
        for collection in self.COLLECTIONS:
            base_items = getattr(base, collection)
            setattr(self, collection, Overlay(base_items))
            if base.indexes is None:  # unindexed base: ids are kept above those present
                floor = max(base_items, default=0) + 1
                self.next_ids[collection] = max(self.next_ids.get(collection, 1), floor)

    def overlay(self, collection: str) -> Overlay[Any]:
        items: Overlay[Any] = getattr(self, collection)
        return items

    def new_id(self, collection: str) -> int:
        nid = self.next_ids.get(collection, 1)
        while nid in self.overlay(collection):  # only a configuration written elsewhere
            nid += 1
        self.next_ids[collection] = nid + 1
        return nid

    def _rekeyed(self) -> bool:
        """The basename changed: the base's name index does not hold this draft's names."""
        return self.global_config.basename != self.base.global_config.basename

    def find(self, index: str, key: Hashable) -> Iterable[int]:
        spec = SPECS[index]
        touched = self.overlay(spec.collection).touched
        if spec.uses_global and self._rekeyed():
            return {o.id for o in self.overlay(spec.collection).values() if key in spec.keys(self, o)}
        out = {oid for oid in self.base.find(index, key) if oid not in touched}
        out.update(oid for oid, obj in touched.items() if obj is not None and key in spec.keys(self, obj))
        return out

    def changes(self, collection: str) -> dict[int, Any]:
        """What the draft changes in `collection`: id -> new object, or None for deleted."""
        if self._committed is not None:
            return self._committed.get(collection, {})
        return self.overlay(collection).changes()

    def changed_collections(self) -> dict[str, dict[int, Any]]:
        """Every collection the draft changes, with its changes."""
        out = {}
        for collection in self.COLLECTIONS:
            changes = self.changes(collection)
            if changes:
                out[collection] = changes
        return out

    def copy(self) -> Config:
        """The whole configuration the draft would make, as a deep unindexed `Config`."""
        out = Config(copy.deepcopy(self.global_config), copy.deepcopy(self.service), next_ids=dict(self.next_ids))
        for collection in self.COLLECTIONS:
            setattr(out, collection, {oid: copy.deepcopy(o) for oid, o in self.overlay(collection).items()})
        return out

    def commit(self) -> Config:
        """Fold the change into the base configuration (in place, indexes kept) and return it."""
        if self._committed is not None:
            raise RuntimeError("this draft is already committed")
        base = self.base
        rekey = self._rekeyed()
        changes = self.changed_collections()
        base.global_config = self.global_config
        base.service = self.service
        base.next_ids = dict(self.next_ids)
        for collection, changed in changes.items():
            items: dict[int, Any] = getattr(base, collection)
            for oid, obj in changed.items():
                if base.indexes is not None:
                    base.indexes.remove(collection, oid)
                if obj is None:
                    items.pop(oid, None)
                    continue
                items[oid] = obj
                if base.indexes is not None:
                    base.indexes.add(base, collection, obj)
        if rekey and base.indexes is not None:
            base.indexes.rekey(base)  # every target's iSCSI name changed with the basename
        self._committed = changes
        return base


def as_change(new: Config, current: Config) -> Config:
    """What `TargetControl.apply(new)` applies over `current`: `new` itself when it is a draft of
    `current` (a change: O(change) to persist and switch to), else the whole configuration it
    makes (a whole `Config`, or a draft of an older configuration, which is then whole)."""
    if isinstance(new, Draft) and new.base is not current:
        return new.copy()
    return new


def committed(new: Config, current: Config) -> Config:
    """The configuration to serve once `as_change(new, current)` is persisted and live: the
    draft folded into `current`, or the whole configuration, indexed."""
    if isinstance(new, Draft) and new.base is current:
        return new.commit()
    whole = as_change(new, current)
    return whole if whole.indexes is not None else whole.indexed()
