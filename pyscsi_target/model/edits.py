"""Edits that touch more than one object: tag numbering, LUN auto-assignment and cascading deletes.

Stdlib only; every function works on a `Config` draft (model/draft.py) that the caller then
validates and applies; objects are found through the indexes (`Config.find`), so a cascade costs
the objects it removes, not the configuration (issue #12).
The rules are FreeNAS's (spec Part A §2.3, §2.7, §2.8 and §4.1) as adjusted by Part B §B.2.3-B.2.4,
with one deliberate departure: FreeNAS set a target group's initiator group to NULL when that
authorized initiator was deleted, and NULL means "no restriction", so deleting an ACL opened its
targets to everyone. We refuse that delete (`InUse`, a 409) while target groups use the ACL
(target-rules §5.4: access control fails closed).
"""

from __future__ import annotations

from typing import Protocol

from .config import Config

#: LUN numbers a target offers: 0..1023 (spec Part B §B.2.4; SAM-5 flat/peripheral addressing
#: covers 0..16383, FreeNAS's CTL lun map was smaller).
LUN_MIN = 0
LUN_MAX = 1023
#: A mapping's lunid before validation when the client asked for "Auto" (null or absent): it
#: becomes the lowest free LUN of the target (spec Part B §B.2.4).
LUN_AUTO = -1


class _Tagged(Protocol):
    tag: int


def next_tag(objects: list[_Tagged]) -> int:
    """FreeNAS's new tag: count + 1, stepped up until unused (spec Part A §2.3)."""
    used = {o.tag for o in objects}
    tag = len(objects) + 1
    while tag in used:
        tag += 1
    return tag


def renumber_tags(cfg: Config, collection: str) -> None:
    """Renumber tags 1..n in their old order, as FreeNAS did after a delete (spec Part A §4.1).
    A changed object is the draft's own copy (`items[oid]`), never the base's."""
    items: dict[int, _Tagged] = getattr(cfg, collection)
    ordered = sorted(items.items(), key=lambda kv: kv[1].tag)
    for number, (oid, obj) in enumerate(ordered, start=1):
        if obj.tag != number:
            items[oid].tag = number


def lowest_free_lun(cfg: Config, target_id: int, mapping_id: int) -> int | None:
    """The lowest LUN of the target not used by another mapping (spec Part B §B.2.4)."""
    used = {cfg.mappings[mid].lunid for mid in cfg.find("mapping_target", target_id) if mid != mapping_id}
    return next((lun for lun in range(LUN_MIN, LUN_MAX + 1) if lun not in used), None)


class InUse(Exception):
    """Deleting the object would silently widen access: answered 409 with these field errors."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _refuse_open_acl(cfg: Config, oid: int) -> None:
    users = sorted(cfg.find("group_initiator", oid))
    if users:
        ids = ", ".join(str(i) for i in users)
        raise InUse({"__all__": [
            f"This authorized initiator is used by target group(s) {ids}: deleting it would open their "
            "targets to every initiator. Change or delete those target groups first."]})


def _drop(cfg: Config, collection: str, ids: list[int], removed: dict[str, list[int]]) -> None:
    items: dict[int, object] = getattr(cfg, collection)
    for oid in ids:
        del items[oid]
    if ids:
        removed.setdefault(collection, []).extend(ids)


def delete(cfg: Config, collection: str, oid: int) -> dict[str, list[int]]:
    """Delete one object and what depends on it; returns the other objects removed, by collection.

    target -> its target groups and LUN mappings; extent -> its LUN mappings; portal -> its target
    groups, then portal tags renumbered; initiator group -> refused (`InUse`) while a target group
    uses it, else initiator tags renumbered; credentials, target groups and mappings cascade nothing
    (Part A §4.1). Raises KeyError if the object does not exist.
    """
    items: dict[int, object] = getattr(cfg, collection)
    if oid not in items:
        raise KeyError(oid)
    if collection == "initiators":
        _refuse_open_acl(cfg, oid)
    del items[oid]
    removed: dict[str, list[int]] = {}
    if collection == "targets":
        _drop(cfg, "mappings", sorted(cfg.find("mapping_target", oid)), removed)
        _drop(cfg, "targetgroups", sorted(cfg.find("group_target", oid)), removed)
    elif collection == "extents":
        _drop(cfg, "mappings", sorted(cfg.find("mapping_extent", oid)), removed)
    elif collection == "portals":
        _drop(cfg, "targetgroups", sorted(cfg.find("group_portal", oid)), removed)
        renumber_tags(cfg, "portals")
    elif collection == "initiators":
        renumber_tags(cfg, "initiators")
    return removed
