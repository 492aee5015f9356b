"""Admission control before authentication (target-rules.md §2, §5.2 "Floods"; issue #10 item 5).

A connection costs memory from accept on, before anyone knows who it is, so at most
`MAX_PRELOGIN_TOTAL` connections may be in the login phase at once, and at most
`MAX_PRELOGIN_PER_SOURCE` from one source address; more are closed at accept.

Guessers are slowed down on the login path, not at accept: the initiator's name is known only
once its first Login Request is parsed, and the slow-down must punish the initiator that fails,
not every initiator on its host. So:
- only authentication failures count (CHAP answered 0x0201, ACL denial 0x0202): a malformed
  PDU, a digest error, a timeout or an unknown target is a protocol error, it tests no secret and
  never delays anything;
- failures are counted per (source, InitiatorName). After `FAILURES_BEFORE_DELAY` of them within
  `FAILURE_WINDOW_S`, the answer to that pair's next Login Request waits an exponentially
  growing delay (capped at `MAX_FAILURE_DELAY_S`, well inside the 15 s login timeout);
- the name is the initiator's own choice, so a guesser could take a fresh name per guess. A
  source where `NAMES_BEFORE_SOURCE_DELAY` distinct names failed within the window is therefore
  slowed down as a whole, except for names that have passed CHAP from it before (a healthy
  initiator behind the same address, `MAX_TRUSTED_PAIRS` remembered). Only a login that proved a
  secret earns that: a login to an open target or discovery is free to anyone, also to a guesser
  whitelisting its next name;
- a success never erases failures: they age out of the window (a guesser riding on a healthy
  initiator's name and logins is not let off).
A "source" is an IPv4 address, or the /64 network of an IPv6 address (`IPV6_SOURCE_PREFIX_LENGTH`):
one IPv6 host usually holds a whole /64 and could otherwise step through its addresses to escape
every per-source limit. IPv4-mapped IPv6 addresses count as their IPv4 address. Initiator names
are compared case-folded (RFC 3722). Pure bookkeeping with explicit times: the server passes
`trio.current_time()`.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict, deque

from ..model.addresses import IPV6_CLIENT_PREFIX_LENGTH, client_key

#: connections in the login phase, whole target (SPDK/LIO have similar global caps)
MAX_PRELOGIN_TOTAL = 256
#: connections in the login phase from one source address
MAX_PRELOGIN_PER_SOURCE = 16
#: authentication failures of one (source, initiator name) within FAILURE_WINDOW_S before its
#: logins are delayed
FAILURES_BEFORE_DELAY = 3
#: distinct initiator names failing authentication from one source within FAILURE_WINDOW_S before
#: the source's untrusted names are all delayed (a guesser rotating names)
NAMES_BEFORE_SOURCE_DELAY = 8
#: window over which failures are counted, seconds
FAILURE_WINDOW_S = 60.0
#: first delay once over a threshold, seconds (doubles per further failure)
FIRST_FAILURE_DELAY_S = 0.5
#: the delay never exceeds this, seconds (below the 15 s login timeout and open-iscsi's 15 s)
MAX_FAILURE_DELAY_S = 8.0
#: failure history kept per (source, name) and per source (bounds memory per key)
MAX_FAILURES_TRACKED = 64
#: (source, name) pairs and sources with failures tracked at most (the least recently failing
#: are forgotten first)
MAX_SOURCES_TRACKED = 4096
#: (source, name) pairs that passed CHAP, remembered at most (least recently used forgotten first)
MAX_TRUSTED_PAIRS = 4096
#: bits of an IPv6 source address that name one source: the /64 a single host is usually given
#: (RFC 4291 §2.5.4 interface identifiers are 64 bits; RFC 7421)
IPV6_SOURCE_PREFIX_LENGTH = IPV6_CLIENT_PREFIX_LENGTH

#: Login Response statuses that mean "a credential or an identity was tried and refused"
#: (RFC 7143 §11.13.5): authentication failure, authorization failure
AUTH_FAILURE_STATUSES = frozenset({(2, 0x01), (2, 0x02)})


def source_key(address: str) -> str:
    """What the per-source limits count: an IPv4 address, or an IPv6 address's /64 (the same
    client key as the API's password guard)."""
    return client_key(address)


def _backoff(count: int, threshold: int) -> float:
    over = count - threshold
    if over < 0:
        return 0.0
    return min(MAX_FAILURE_DELAY_S, FIRST_FAILURE_DELAY_S * (2 ** min(over, 16)))


class _Recent:
    """Failure times under one key, in an LRU-bounded table (the least recently failing go first)."""

    def __init__(self) -> None:
        self._table: OrderedDict[object, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def add(self, key: object, now: float) -> bool:
        """Record a failure; True if `key` had none in the window before (a new key)."""
        q = self._table.pop(key, None)
        new = q is None or not q or q[-1] < now - FAILURE_WINDOW_S
        if q is None:
            while len(self._table) >= MAX_SOURCES_TRACKED:
                self._table.popitem(last=False)
            q = deque(maxlen=MAX_FAILURES_TRACKED)
        self._table[key] = q
        q.append(now)
        return new

    def count(self, key: object, now: float) -> int:
        q = self._table.get(key)
        if not q:
            return 0
        while q and q[0] < now - FAILURE_WINDOW_S:
            q.popleft()
        if not q:
            del self._table[key]
        return len(q)


class Admission:
    def __init__(self) -> None:
        self._prelogin: dict[str, int] = defaultdict(int)
        self._prelogin_total = 0
        #: (source, name) -> authentication failure times
        self._failures = _Recent()
        #: source -> times at which a name newly failed there (distinct failing names)
        self._failing_names = _Recent()
        #: (source, name) pairs that passed CHAP
        self._trusted: OrderedDict[tuple[str, str], None] = OrderedDict()

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

    def auth_failed(self, source: str, initiator_name: str, now: float) -> None:
        """A login of `initiator_name` from `source` failed authentication (0x0201/0x0202)."""
        source = source_key(source)
        if self._failures.add((source, initiator_name.lower()), now):
            self._failing_names.add(source, now)

    def authenticated(self, source: str, initiator_name: str) -> None:
        """A login of the pair passed CHAP: it is trusted from here on (exempt from the
        source-wide slow-down, never from its own). Its failures are kept until they age out."""
        key = (source_key(source), initiator_name.lower())
        self._trusted.pop(key, None)
        self._trusted[key] = None
        while len(self._trusted) > MAX_TRUSTED_PAIRS:
            self._trusted.popitem(last=False)

    def login_delay(self, source: str, initiator_name: str, now: float) -> float:
        """How long the answer to a Login Request of `initiator_name` from `source` must wait."""
        source = source_key(source)
        key = (source, initiator_name.lower())
        delay = _backoff(self._failures.count(key, now), FAILURES_BEFORE_DELAY)
        if key not in self._trusted:
            delay = max(delay, _backoff(self._failing_names.count(source, now), NAMES_BEFORE_SOURCE_DELAY))
        return delay
