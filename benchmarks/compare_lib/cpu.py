"""Target CPU time per command (issue #17): utime + stime of a target's processes over one run.

/proc/PID/stat fields 14 and 15 (proc(5)) are the process's user and system time in clock ticks,
summed over all its threads (tgtd's and istgt's I/O threads, pyscsi-target's worker threads);
a target that forks is summed over its process tree. The figure divided by the commands the run
completed is the target's CPU per command: unlike IOPS it hardly moves when other load on the
machine takes CPU away, and 1 s divided by it is how many commands one core could serve.
"""

from __future__ import annotations

import os
from pathlib import Path

from .rss import process_tree

#: Clock ticks per second of /proc/PID/stat's times (sysconf(_SC_CLK_TCK), 100 on Linux).
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
#: 0-based positions of utime and stime in the fields after the ")" that closes comm (proc(5):
#: fields 14 and 15 of the whole line; comm may contain spaces, hence the split after ")").
_UTIME, _STIME = 11, 12


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads); 0.0 if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[_UTIME]) + int(fields[_STIME])) / CLOCK_TICKS_PER_S


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process tree rooted at `pid`."""
    return sum(process_cpu_s(p) for p in process_tree(pid))


def us_per_command(cpu_s: float, commands: float) -> float | None:
    """Microseconds of CPU per command, None when no command completed."""
    return cpu_s * 1e6 / commands if commands > 0 else None
