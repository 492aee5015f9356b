"""Resident memory of a target process (and any children it forks), read from /proc.

The issue's floor is "peak RSS under the 1 MiB QD16 load". Before each benchmark run we reset the
kernel's high-water mark (writing "5" to /proc/PID/clear_refs resets VmHWM, Linux >= 4.0,
Documentation/filesystems/proc.rst) and read VmHWM afterwards, which catches peaks between samples;
a sampling thread also records VmRSS and its RssAnon / RssFile split every SAMPLE_INTERVAL_S, which
is the fallback when the reset is not permitted. For a process tree the figures are sums over the
processes (an upper bound of the tree's true peak, exact for one process).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

#: How often the sampler reads /proc/PID/status during a run, seconds.
SAMPLE_INTERVAL_S = 0.1
#: The /proc/PID/status fields we keep, all in KiB.
STATUS_FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")
#: clear_refs value that resets the peak RSS (proc(5): "5" resets VmHWM).
CLEAR_REFS_RESET_HWM = "5"


@dataclass(frozen=True)
class RssPeak:
    """Peak memory of one target over one run, KiB."""

    rss_kib: int  # peak resident set (VmHWM after a reset, else the largest sampled VmRSS)
    anon_kib: int  # largest sampled RssAnon (heap, Python objects, buffers)
    file_kib: int  # largest sampled RssFile (mapped file pages, e.g. an mmap'd extent)
    exact: bool  # True when rss_kib is the kernel's VmHWM after a reset

    def merge(self, other: RssPeak) -> RssPeak:
        return RssPeak(max(self.rss_kib, other.rss_kib), max(self.anon_kib, other.anon_kib),
                       max(self.file_kib, other.file_kib), self.exact and other.exact)

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


def read_status(pid: int) -> dict[str, int]:
    """The STATUS_FIELDS of /proc/PID/status in KiB; {} if the process is gone."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_FIELDS:
            out[key] = int(value.split()[0])
    return out


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (via /proc/PID/task/TID/children)."""
    seen: list[int] = []
    todo = [pid]
    while todo:
        cur = todo.pop()
        seen.append(cur)
        for task in Path(f"/proc/{cur}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return seen


def tree_status(pid: int) -> dict[str, int]:
    """STATUS_FIELDS summed over the process tree rooted at `pid`."""
    total = dict.fromkeys(STATUS_FIELDS, 0)
    for p in process_tree(pid):
        for key, value in read_status(p).items():
            total[key] += value
    return total


def reset_hwm(pid: int) -> bool:
    """Reset VmHWM of every process in the tree; False if any reset was refused."""
    ok = True
    for p in process_tree(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text(CLEAR_REFS_RESET_HWM)
        except OSError:
            ok = False
    return ok


class PeakRss:
    """Context manager: the peak memory of the process tree at `pid` while the block runs."""

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, daemon=True)
        self._max = dict.fromkeys(STATUS_FIELDS, 0)
        self._reset_ok = False
        self.result: RssPeak | None = None

    def _sample(self) -> None:
        for key, value in tree_status(self.pid).items():
            self._max[key] = max(self._max[key], value)

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakRss:
        self._reset_ok = reset_hwm(self.pid)
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        m = self._max
        rss = max(m["VmHWM"], m["VmRSS"]) if self._reset_ok else m["VmRSS"]
        self.result = RssPeak(rss, m["RssAnon"], m["RssFile"], self._reset_ok)
