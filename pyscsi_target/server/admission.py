"""Admission control before authentication (target-rules.md §2, §5.2 "Floods").

A connection costs memory from accept on, before anyone knows who it is, so:
- at most `MAX_PRELOGIN_TOTAL` connections may be in the login phase at once, and at most
  `MAX_PRELOGIN_PER_SOURCE` from one source address; more are closed at accept;
- a source address whose logins keep failing is slowed down: after `FAILURES_BEFORE_DELAY`
  failures within `FAILURE_WINDOW_S`, each new connection from it waits an exponentially growing
  delay (capped at `MAX_FAILURE_DELAY_S`) before its first byte is read. The waiting connection
  still counts against the caps above, so a flood cannot turn the delay into unbounded memory.
A "source" is an IPv4 address, or the /64 network of an IPv6 address (`IPV6_SOURCE_PREFIX_LENGTH`): one
IPv6 host usually holds a whole /64 and could otherwise step through its addresses to escape every
per-source limit. IPv4-mapped IPv6 addresses count as their IPv4 address.
Pure bookkeeping with explicit times: the server passes `trio.current_time()`.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict, deque

#: connections in the login phase, whole target (SPDK/LIO have similar global caps)
MAX_PRELOGIN_TOTAL = 256
#: connections in the login phase from one source address
MAX_PRELOGIN_PER_SOURCE = 16
#: failed logins from one address within FAILURE_WINDOW_S before new connections are delayed
FAILURES_BEFORE_DELAY = 3
#: window over which failed logins are counted, seconds
FAILURE_WINDOW_S = 60.0
#: first delay once over the threshold, seconds (doubles per further failure)
FIRST_FAILURE_DELAY_S = 0.5
#: the delay never exceeds this, seconds
MAX_FAILURE_DELAY_S = 8.0
#: failure history kept per address (bounds memory per address)
MAX_FAILURES_TRACKED = 64
#: addresses tracked at most (the oldest are forgotten first)
MAX_SOURCES_TRACKED = 4096
#: bits of an IPv6 source address that name one source: the /64 a single host is usually given
#: (RFC 4291 §2.5.4 interface identifiers are 64 bits; RFC 7421)
IPV6_SOURCE_PREFIX_LENGTH = 64


def source_key(address: str) -> str:
    """What the per-source limits count: an IPv4 address, or an IPv6 address's /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_SOURCE_PREFIX_LENGTH), strict=False))
    return str(ip)


class Admission:
    def __init__(self) -> None:
        self._prelogin: dict[str, int] = defaultdict(int)
        self._prelogin_total = 0
        self._failures: dict[str, deque[float]] = {}

    @property
    def prelogin_total(self) -> int:
        return self._prelogin_total

    def admit(self, source: str) -> bool:
        """A new connection from `source`: True if it may proceed (then call `release` exactly
        once for it, when it logs in or closes)."""
        source = source_key(source)
        if self._prelogin_total >= MAX_PRELOGIN_TOTAL or self._prelogin[source] >= MAX_PRELOGIN_PER_SOURCE:
            if not self._prelogin[source]:
                del self._prelogin[source]
            return False
        self._prelogin[source] += 1
        self._prelogin_total += 1
        return True

    def release(self, source: str) -> None:
        """The connection left the login phase (logged in, or closed)."""
        source = source_key(source)
        n = self._prelogin.get(source, 0)
        if n <= 1:
            self._prelogin.pop(source, None)
        else:
            self._prelogin[source] = n - 1
        self._prelogin_total = max(0, self._prelogin_total - 1)

    def failed(self, source: str, now: float) -> None:
        source = source_key(source)
        q = self._failures.pop(source, None)  # re-inserted last: the least recently failing go first
        if q is None:
            if len(self._failures) >= MAX_SOURCES_TRACKED:
                self._failures.pop(next(iter(self._failures)))
            q = deque(maxlen=MAX_FAILURES_TRACKED)
        self._failures[source] = q
        q.append(now)

    def delay(self, source: str, now: float) -> float:
        """How long a new connection from `source` must wait before its login is read."""
        source = source_key(source)
        q = self._failures.get(source)
        if not q:
            return 0.0
        while q and q[0] < now - FAILURE_WINDOW_S:
            q.popleft()
        if not q:
            del self._failures[source]
            return 0.0
        over = len(q) - FAILURES_BEFORE_DELAY
        if over < 0:
            return 0.0
        return min(MAX_FAILURE_DELAY_S, FIRST_FAILURE_DELAY_S * (2 ** min(over, 16)))
