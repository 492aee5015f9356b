"""The thin-provisioning soft threshold (SBC-4 §4.7.3.7): a unit attention THIN PROVISIONING SOFT
THRESHOLD REACHED (38/07) when the extent's used fraction rises to the configured percentage.

FreeNAS's `avail_threshold` is a percentage of the extent: ctld's "avail-threshold" option is set
to the size times (100 - threshold) %, so the alert comes when used space reaches the threshold.
The threshold is armed in the increasing direction (SBC-4 §4.7.3.7.2): it fires once when the
used fraction crosses it upwards, and re-arms only after the fraction has fallen below it again
(UNMAP, WRITE SAME with UNMAP, SANITIZE BLOCK ERASE).

Measuring allocation can cost a scan of the file's extent map, so it is done at most once per
`THRESHOLD_CHECK_INTERVAL_S` of write activity; the server may also call
`LogicalUnit.check_provisioning_threshold()` from its housekeeping.
"""

from __future__ import annotations

import math

#: the allocation of a thin extent is measured at most this often while it is being written,
#: in seconds (a crossing is reported within this time of the write that caused it)
THRESHOLD_CHECK_INTERVAL_S = 1.0
PERCENT = 100


class ThresholdMonitor:
    """Edge detection for one LU's soft threshold; the LU owns the clock and the measurement."""

    def __init__(self, percent: int | None) -> None:
        self.percent = percent
        self.armed = True
        self._last_check = -math.inf

    @property
    def enabled(self) -> bool:
        return self.percent is not None and 0 < self.percent <= PERCENT

    def due(self, now: float) -> bool:
        """True when enough time has passed since the last measurement (and records `now`)."""
        if not self.enabled or now - self._last_check < THRESHOLD_CHECK_INTERVAL_S:
            return False
        self._last_check = now
        return True

    def crossed(self, used_bytes: int, size_bytes: int) -> bool:
        """Feed one measurement; True exactly when the used fraction has just reached the
        threshold from below (the caller then establishes the unit attention)."""
        if not self.enabled or size_bytes <= 0:
            return False
        assert self.percent is not None
        reached = used_bytes * PERCENT >= self.percent * size_bytes
        if reached and self.armed:
            self.armed = False
            return True
        if not reached:
            self.armed = True
        return False
