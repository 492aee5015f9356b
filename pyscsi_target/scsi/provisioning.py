"""The thin-provisioning soft thresholds (SBC-4 §4.7.3.7): a unit attention THIN PROVISIONING SOFT
THRESHOLD REACHED (38/07) when the space left to an LU falls below a configured percentage.

Two thresholds, both as FreeNAS wrote them for CTL (issue #11 items 2 and 4):
- the extent's `avail_threshold`: ctld's "avail-threshold" is size x pct / 100 bytes, and CTL
  raises 38/07 when the LU's AVAILABLE space drops below it. Available space is the free space of
  the file system holding a file-backed extent and, for a thin extent, size - allocated bytes,
  whichever is lower (`available_bytes`);
- the global `iscsi_pool_avail_threshold`: "pool-avail-threshold" is the pool's size x pct / 100,
  and 38/07 comes when the pool's free space drops below it. Our pool is the file system holding
  the extent's file (`storage.Space`); a real block device reports none and is not measured.

Each threshold fires once per crossing (downwards) on every I_T nexus of the LU, and re-arms when
the space is back at or above it (SBC-4 §4.7.3.7.2: armed in the decreasing direction; no band of
hysteresis: a recovery to the threshold itself is a recovery). A changed percentage starts a new
monitor, armed.

Measuring is I/O (statvfs, a scan of the file's extent map), so the LU does it at most once per
`THRESHOLD_CHECK_INTERVAL_S` of monotonic time while it is being written: the write path pays one
clock read and one comparison (`LogicalUnit.after_write`). The server may also call
`LogicalUnit.check_provisioning_threshold()` from its housekeeping.
"""

from __future__ import annotations

from ..storage.base import Space

#: the space left to a written LU is measured at most this often, in seconds (a crossing is
#: reported by the first write at least this long after the previous measurement)
THRESHOLD_CHECK_INTERVAL_S = 1.0
PERCENT = 100


class ThresholdMonitor:
    """Edge detection for one threshold of one LU; the LU owns the clock and the measurement."""

    def __init__(self, percent: int | None) -> None:
        self.percent = percent
        self.armed = True

    @property
    def enabled(self) -> bool:
        return self.percent is not None and 0 < self.percent <= PERCENT

    def crossed(self, available_bytes: int, whole_bytes: int) -> bool:
        """Feed one measurement; True exactly when the available space has just dropped below
        `percent` % of `whole_bytes` (the caller then establishes the unit attention)."""
        if not self.enabled or whole_bytes <= 0:
            return False
        assert self.percent is not None
        low = available_bytes * PERCENT < self.percent * whole_bytes
        if low and self.armed:
            self.armed = False
            return True
        if not low:
            self.armed = True
        return False


def available_bytes(size_bytes: int, space: Space | None, allocated_bytes: int | None) -> int | None:
    """The space an LU can still take: the free space of its file system (`space`, None: not
    known) and, for a thin LU, its unallocated share (`allocated_bytes`, None: not thin), the lower
    of the two; None when neither is known."""
    known = []
    if space is not None:
        known.append(space.free_bytes)
    if allocated_bytes is not None:
        known.append(max(0, size_bytes - allocated_bytes))
    return min(known) if known else None
