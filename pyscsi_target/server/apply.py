"""Applying a configuration change to the live target in O(change) (issue #12).

`ChangeApplier` is the half of `TargetService` (server/service.py) that makes the live target match
a change. What a change touches is worked out first (`Plan`, from the `Draft`'s changed ids, before
the served configuration takes it): the extents to open, resize, update or retire; the targets
whose LUN maps are rebuilt (those changed, those of changed mappings, those mapping changed
extents); whether listeners, sessions and iSNS need a look (only when portals, targets, groups, the
service or the global configuration changed). A whole `Config` (start-up, import, the demo) plans
everything: start-up is the same code path, a change of everything.

Then, as before (docs/design.md "The API applies whole configurations"):
1. open what the change needs: extents (in batches, several worker threads at once: 10,000
   extents at start-up open in seconds, not one thread round trip each) and listening sockets; on
   failure undo and raise `ApplyError` naming the object and model attribute;
2. persist it (one SQLite transaction of the changed rows, model/store.py);
3. switch over, synchronously on the event loop: the served configuration takes the change
   (model/draft.py `committed`), then listeners, sessions, unit attentions and retired extents.
Extents not served (their LU answers NOT READY) are retried at every apply, as before.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from ..model import ApplyError, Config, ConfigStore, Draft, Extent, committed
from ..model.extents import MSG_SHRINK, parse_filesize, resolving
from ..model.kinds import kind_for
from ..scsi.host import LuHost
from ..scsi.lu import LogicalUnit
from ..scsi.sense import SenseReason
from .extents import LiveExtent, identity_of, not_ready, remove_created
from .fabric import ServerHost

if TYPE_CHECKING:
    from .isns import IsnsManager
    from .prstore import PrStore

log = logging.getLogger("pyscsi_target.service")

#: extents opened per worker-thread call at start-up and in big changes (one thread round trip
#: per extent made 10,000 extents take minutes on a busy loop, issue #12)
OPEN_BATCH_SIZE = 64
#: worker threads opening extents at once (the opens are system calls: a few overlap well)
OPEN_THREADS = 4

Address = tuple[str, int]
_ALL = ("targets", "targetgroups", "portals", "mappings", "extents", "auths", "initiators")


@dataclass
class Plan:
    """What a change touches in the live target."""

    #: extents whose live state is looked at (opened, resized, updated, retired)
    extents: set[int] = field(default_factory=set)
    #: targets whose LUN maps are rebuilt
    targets: set[int] = field(default_factory=set)
    #: portals or the service changed: listeners are compared
    listeners: bool = True
    #: sessions whose target, portal or group went away end
    sessions: bool = True
    #: iSNS registrations are recomputed
    isns: bool = True
    #: the global `iscsi_pool_avail_threshold` changed: every LU follows it (issue #11 item 2)
    pool_threshold: bool = True


def plan_change(old: Config, change: Config, live_extents: Iterable[int], failing: set[int]) -> Plan:
    """The plan of `change` over `old` (before `old` takes it). A whole Config plans everything."""
    if not isinstance(change, Draft):
        return Plan(set(change.extents) | set(live_extents), set(change.targets) | set(old.targets))
    changed = change.changed_collections()
    plan = Plan(listeners=False, sessions=False, isns=False)
    plan.extents = set(changed.get("extents", ())) | failing
    plan.targets = set(changed.get("targets", ()))
    for mid, mapping in changed.get("mappings", {}).items():
        before = old.mappings.get(mid)
        if before is not None:
            plan.targets.add(before.target)
        if mapping is not None:
            plan.targets.add(mapping.target)
    for eid in plan.extents:  # changed, or retried: the LUN maps that show them
        for cfg in (old, change):
            plan.targets.update(cfg.mappings[mid].target for mid in cfg.find("mapping_extent", eid))
    global_changed = change.global_config != old.global_config
    service_changed = change.service != old.service
    plan.listeners = "portals" in changed or service_changed
    plan.sessions = bool({"portals", "targets", "targetgroups"} & set(changed)) or service_changed or global_changed
    plan.isns = plan.sessions
    plan.pool_threshold = change.global_config.pool_avail_threshold != old.global_config.pool_avail_threshold
    return plan


def desired_addresses(cfg: Config) -> dict[Address, int]:
    """(host, port) -> portal id, for every portal address that should be listening."""
    if not cfg.service.enabled:
        return {}
    out: dict[Address, int] = {}
    for portal in cfg.portals.values():
        for a in portal.ips:
            out[(a.host, a.port)] = portal.id
    return out


class ChangeApplier:
    """The apply path of `TargetService` (a mixin: the service owns the attributes it uses)."""

    config: Config
    store: ConfigStore | None
    extents: dict[int, LiveExtent]
    host: ServerHost
    pr_store: PrStore | None
    isns: IsnsManager | None
    _lun_maps: dict[int, dict[int, LogicalUnit]]
    _nursery: trio.Nursery | None
    listeners: dict[Address, Any]
    _extent_opener: Callable[[Extent, LuHost], LiveExtent]
    #: storage identity -> id of the served extent on it (issue #10 item 3, without a scan)
    _identities: dict[tuple[object, ...], int]
    #: ids of the extents whose LU answers NOT READY (retried at every apply)
    _failing: set[int]

    async def _apply(self, new: Config, *, persist: bool, initial: bool = False) -> None:
        old = self.config
        plan = plan_change(old, new, self.extents.keys(), self._failing)
        opened: dict[int, LiveExtent] = {}
        resized: list[LiveExtent] = []
        bound: dict[Address, Any] = {}
        want: dict[Address, int] | None = None
        try:
            await self._open_extents(new, plan.extents, opened, resized, strict=not initial)
            if plan.listeners:
                want = desired_addresses(new)
                for addr in want:
                    if addr not in self.listeners:
                        bound[addr] = await self._bind(addr, want[addr], strict=not initial)
            if persist and self.store is not None:
                await trio.to_thread.run_sync(self.store.save, new)
        except BaseException:
            for live in opened.values():  # nothing of a refused change stays (spec Part B §B.2.2)
                await trio.to_thread.run_sync(_close_and_undo, live)
            for s in bound.values():
                s.close()
            raise
        self._switch(old, committed(new, old), plan, opened, resized, bound, want)

    # -- what the service provides (server/service.py) ---------------------------------------------
    async def _bind(self, addr: Address, portal_id: int, *, strict: bool) -> Any:
        raise NotImplementedError

    def _switch_listeners(self, want: dict[Address, int], bound: dict[Address, Any]) -> None:
        raise NotImplementedError

    def _end_sessions_no_longer_allowed(self, cfg: Config) -> None:
        raise NotImplementedError

    # -- opening ------------------------------------------------------------------------------------
    async def _open_extents(self, new: Config, ids: set[int], opened: dict[int, LiveExtent],
                            resized: list[LiveExtent], *, strict: bool) -> None:
        """Open what `new` needs of the extents `ids`. A new or changed extent that cannot be
        opened refuses the change when `strict` (an API apply); at start-up, and for an unchanged
        extent that was not served, it becomes a NOT READY LU with the reason (issue #10 item 2)."""
        refusing: set[int] = set()
        to_open: list[tuple[Extent, LiveExtent | None, bool]] = []
        for eid in sorted(ids):
            ext = new.extents.get(eid)
            if ext is None or not ext.enabled:
                continue
            live = self.extents.get(eid)
            unchanged = live is not None and live.same_storage(ext)
            if live is not None and unchanged and live.problem is None:
                if _resizable(ext) and ext.filesize != live.extent.filesize:
                    await self._resize(live, ext, resized)
                continue
            if strict and not unchanged:
                refusing.add(eid)
            to_open.append((ext, live, unchanged))
        results = await self._open_many([ext for ext, _, _ in to_open])
        failure: ApplyError | None = None
        for (ext, live, unchanged), result in zip(to_open, results, strict=True):
            if isinstance(result, BaseException):
                if ext.id in refusing:
                    failure = failure or _open_refusal(ext, result)
                    continue
                result = not_ready(ext, f"cannot open {ext.path}: {result}", self.host)
            if result.problem is not None:
                log.error("extent %r is not served (LUN not ready): %s", ext.name, result.problem)
            if live is not None and unchanged and result.problem is not None:
                # still not servable: keep the LU the initiators know (no REPORTED LUNS DATA
                # HAS CHANGED at every apply), with the latest reason
                await trio.to_thread.run_sync(_close_and_undo, result)
                live.problem = live.lu.unavailable = result.problem
                continue
            opened[ext.id] = result
        if failure is not None:
            raise failure
        await self._refuse_shared(new, opened, refusing)

    async def _open_many(self, exts: list[Extent]) -> list[LiveExtent | BaseException]:
        """Open `exts` in batches on a few worker threads; each result is the live extent or
        the exception that refused it."""
        results: list[LiveExtent | BaseException] = [RuntimeError("not opened")] * len(exts)
        limiter = trio.CapacityLimiter(OPEN_THREADS)

        async def batch(start: int) -> None:
            part = exts[start:start + OPEN_BATCH_SIZE]
            done = await trio.to_thread.run_sync(self._open_batch, part, limiter=limiter)
            results[start:start + len(done)] = done

        if len(exts) <= 1:
            return await trio.to_thread.run_sync(self._open_batch, exts) if exts else []
        async with trio.open_nursery() as nursery:
            for start in range(0, len(exts), OPEN_BATCH_SIZE):
                nursery.start_soon(batch, start)
        return results

    def _open_batch(self, exts: list[Extent]) -> list[LiveExtent | BaseException]:
        """Blocking: open each extent and install its saved reservations."""
        out: list[LiveExtent | BaseException] = []
        saved = self.pr_store.saved() if self.pr_store is not None and len(exts) > 1 else None
        with resolving():  # their folders are resolved once per batch
            for ext in exts:
                out.append(self._open_and_load(ext, saved))
        return out

    def _open_and_load(self, ext: Extent, saved: set[str] | None) -> LiveExtent | BaseException:
        """Blocking: one extent opened with its saved reservations, or why it could not be.
        `saved`: the reservation states there are (PrStore.saved), None to look each up."""
        try:
            live = self._extent_opener(ext, self.host)
        except Exception as exc:
            return exc
        if saved is not None and self.pr_store is not None and not self.pr_store.has(live.extent.naa, saved):
            return live
        problem = self._load_pr_state(live)
        if problem is not None:
            live.problem = live.lu.unavailable = problem
        return live

    async def _resize(self, live: LiveExtent, ext: Extent, resized: list[LiveExtent]) -> None:
        """Growing is live (CAPACITY DATA HAS CHANGED); shrinking would destroy the data past the
        new end under the initiators, so it is refused (issue #10 item 9)."""
        size = parse_filesize(ext.filesize)
        current = live.backend.size_bytes
        if not size or size == current:
            return
        if size < current:
            raise ApplyError(MSG_SHRINK.format(current=current), "extents", ext.id, "filesize")
        try:
            await trio.to_thread.run_sync(live.backend.resize, size)
        except Exception as exc:
            raise ApplyError(f"Cannot resize: {exc}", "extents", ext.id, "filesize") from exc
        resized.append(live)

    def _load_pr_state(self, live: LiveExtent) -> str | None:
        """Install the saved persistent reservations (APTPL); the reason when they cannot be read:
        serving the LU as if it had none would break a cluster's fencing (issue #10 item 11)."""
        store, naa = self.pr_store, live.extent.naa
        if store is None or not naa:
            return None
        try:
            saved = store.load(naa)
            if saved is not None:
                live.lu.load_pr_state(saved)
        except Exception as exc:
            return f"cannot read its persistent reservations: {exc}"
        return None

    async def _refuse_shared(self, new: Config, opened: dict[int, LiveExtent], refusing: set[int]) -> None:
        """No two served extents on one file or device (issue #10 item 3): an opened extent whose
        storage an extent already served (or opened earlier, lower id first) uses is refused."""
        claimed: dict[tuple[object, ...], str] = {}
        for eid in sorted(opened):
            live = opened[eid]
            if live.identity is None:
                continue
            owner = self._identities.get(live.identity)
            other = None
            if owner is not None and owner not in opened:
                ext = new.extents.get(owner)
                if ext is not None and ext.enabled:
                    other = ext.name
            if other is None:
                other = claimed.setdefault(live.identity, live.extent.name)
            if other == live.extent.name:
                continue
            reason = f'{live.extent.path} is the file or device of extent "{other}"'
            if eid in refusing:
                raise ApplyError(f'This file is already used by extent "{other}".', "extents", eid,
                                 _location(live.extent))
            await trio.to_thread.run_sync(_close_and_undo, live)
            opened[eid] = not_ready(live.extent, reason, self.host)
            log.error("extent %r is not served (LUN not ready): %s", live.extent.name, reason)

    # -- switching over -------------------------------------------------------------------------------
    def _switch(self, old: Config, new: Config, plan: Plan, opened: dict[int, LiveExtent],
                resized: list[LiveExtent], bound: dict[Address, Any], want: dict[Address, int] | None) -> None:
        """Make the live target serve `new` (already the served configuration's new state): only
        what `plan` names is looked at."""
        retired: list[LiveExtent] = []
        for eid in plan.extents:
            live = self.extents.get(eid)
            ext = new.extents.get(eid)
            if live is not None and (ext is None or not ext.enabled or eid in opened):
                retired.append(self.extents.pop(eid))
                self._forget(eid, live)
                if eid in opened:  # an LU's totals outlive a reopen of its extent (issue #13)
                    opened[eid].lu.stats = live.lu.stats
            elif live is not None and ext is not None:
                live.extent = ext
                live.lu.identity = identity_of(ext)
        for eid, live in opened.items():
            self.extents[eid] = live
            if live.identity is not None:
                self._identities[live.identity] = eid
        # every LU measures against the current pool threshold: new LUs, and all when it changed
        _follow_pool_threshold(self.extents.values() if plan.pool_threshold else opened.values(), new)
        for eid in plan.extents:
            live = self.extents.get(eid)
            if live is not None and live.problem is not None:
                self._failing.add(eid)
            else:
                self._failing.discard(eid)
        self.config = new
        changed_maps = self._rebuild_lun_maps(new, plan.targets)
        if plan.isns and self.isns is not None:
            self.isns.configure(new)
        if want is not None:
            self._switch_listeners(want, bound)
        # sessions whose target or portal is gone end now; others see their LUN changes
        if plan.sessions:
            self._end_sessions_no_longer_allowed(new)
        for luns in changed_maps:
            for lu in luns.values():
                lu.add_unit_attention(SenseReason.REPORTED_LUNS_DATA_CHANGED)
        for live in resized:
            live.lu.capacity_changed()
        for live in retired:
            if self._nursery is not None:
                self._nursery.start_soon(trio.to_thread.run_sync, flush_and_close, live)

    def _forget(self, eid: int, live: LiveExtent) -> None:
        if live.identity is not None and self._identities.get(live.identity) == eid:
            del self._identities[live.identity]

    def _rebuild_lun_maps(self, cfg: Config, targets: set[int]) -> list[dict[int, LogicalUnit]]:
        """Rebuild the LUN maps of `targets`; the new maps of those that existed and changed."""
        changed = []
        for tid in targets:
            before = self._lun_maps.pop(tid, None)
            if tid not in cfg.targets:
                continue
            luns = {}
            for lun, ext in cfg.luns_of_target(tid).items():
                live = self.extents.get(ext.id)
                if live is not None:
                    luns[lun] = live.lu
            self._lun_maps[tid] = luns
            if before is not None and {n: id(lu) for n, lu in before.items()} != {n: id(lu) for n, lu in luns.items()}:
                changed.append(luns)
        return changed


def _follow_pool_threshold(lives: Iterable[LiveExtent], cfg: Config) -> None:
    """Every LU measures against the current `iscsi_pool_avail_threshold` (issue #11 item 2); the
    extent's own `avail_threshold` travels in its identity, which `_switch` replaces."""
    percent = cfg.global_config.pool_avail_threshold
    for live in lives:
        live.lu.pool_avail_threshold = percent


def _resizable(ext: Extent) -> bool:
    """`filesize` applies to the extent's kind (a change resizes it live)."""
    kind = kind_for(ext.type)
    return kind is not None and kind.resizable


def _open_refusal(ext: Extent, exc: BaseException) -> ApplyError:
    """Why a new or changed extent could not be opened, about the field that can fix it: a size the
    file system cannot hold (EFBIG: ext4 stops at 16 TiB with 4 KiB blocks) is about the size,
    anything else about where the storage is."""
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return ApplyError(f"{ext.filesize} bytes is more than the file system of {ext.path} can hold in one file",
                          "extents", ext.id, "filesize")
    return ApplyError(f"Cannot open {ext.path}: {exc}", "extents", ext.id, _location(ext))


def _location(ext: Extent) -> str | None:
    """The model attribute that names the extent's storage (refusals about it name that field);
    None for a type no kind has (the refusal is then about the extent as a whole)."""
    kind = kind_for(ext.type)
    return kind.location if kind is not None else None


def _close_and_undo(live: LiveExtent) -> None:
    """Close an extent a refused change opened, and remove what opening it created."""
    live.backend.close()
    remove_created(live.created)
    for undo in live.undo:
        undo()


def flush_and_close(live: LiveExtent) -> None:
    """Blocking: end the LU's background work (a sanitize of an extent no longer served: it stops
    at its next step) before the backend is flushed and closed under it."""
    live.lu.stop_sanitize()
    try:
        if not live.backend.read_only:
            live.backend.flush()
    except Exception as exc:
        log.error("extent %r: flush on close failed: %s", live.extent.name, exc)
    finally:
        live.backend.close()


def flush_and_close_all(lives: list[LiveExtent]) -> None:
    """Blocking: `flush_and_close` each (shutdown: one thread round trip, not one per extent)."""
    for live in lives:
        flush_and_close(live)
