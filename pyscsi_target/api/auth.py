"""HTTP Basic authentication for the API: user `root`, one password, and slowing of guessers.

Spec Part B §B.1.6, target-rules §5.4, issue #10 item 5. The password is kept only as an
HMAC-SHA256 digest under a per-process random key; a presented user and password are digested the
same way and compared with `hmac.compare_digest`, always both, so the answer time does not depend
on which part was wrong.

Slowing punishes the guesser, not its neighbours:
- Only root can log in, so only attempts at root's password are counted, per address. A missing
  or malformed `Authorization` header or another user name is answered 401 and leaves no state:
  there is nothing to guess, and random user names cannot grow the guard's tables.
- A failure counts once per distinct wrong password within `FAILURE_WINDOW` (a keyed digest is
  kept): a broken script repeating one stale password tests nothing new and throttles nobody.
- From `MAX_FAILURES` distinct wrong passwords on, root's requests from that address are checked
  only after a delay (`FIRST_DELAY_SECONDS`, doubling per further failure, at most
  `MAX_DELAY_SECONDS`), right password or wrong, so the answer and its time reveal nothing
  sooner. The right password still gets in, late: letting it in at once would let a guesser
  keep testing at full speed, since a 200 is all it needs to see. At most
  `MAX_WAITING_PER_ADDRESS` requests wait at once per address; more are answered 429 with
  `Retry-After` unchecked, which bounds a parallel guesser to that many guesses per delay.
- A success never erases failures; they age out of the window. Addresses tracked are bounded
  (`MAX_TRACKED`, least recently failing forgotten first) and so is each one's record. An
  "address" is an IPv4 address or an IPv6 /64 (`IPV6_PREFIX_LENGTH`), as for iSCSI logins
  (server/admission.py): one IPv6 host holds a whole /64 and could step through it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..model.addresses import IPV6_CLIENT_PREFIX_LENGTH, client_key

#: The only user FreeNAS let in (spec Part A §1.2).
API_USER = "root"
#: Realm in `WWW-Authenticate` (spec Part B §B.1.6).
REALM = "pyscsi-target"
#: Distinct wrong passwords for root from one address before its requests are delayed; no source
#: prescribes a number (target-rules §5.4), this is our choice: a typo or two never slows a person.
MAX_FAILURES = 5
#: Seconds over which those failures are counted.
FAILURE_WINDOW = 60.0
#: Seconds root's requests from a throttled address wait before their password is checked.
FIRST_DELAY_SECONDS = 1.0
#: The wait doubles per further failure up to this many seconds: the bound on how late the right
#: password gets in while its address is being used to guess.
MAX_DELAY_SECONDS = 8.0
#: Requests of one throttled address waiting at once; more are answered 429 unchecked.
MAX_WAITING_PER_ADDRESS = 4
#: Wrong passwords remembered per address (enough to reach MAX_DELAY_SECONDS).
MAX_FAILURES_TRACKED = 16
#: Addresses tracked at once; the least recently failing are forgotten first (bounded memory).
MAX_TRACKED = 10_000
#: Bits of an IPv6 address that name one client (model.addresses.client_key)
IPV6_PREFIX_LENGTH = IPV6_CLIENT_PREFIX_LENGTH
#: Length of a generated password, in bytes of randomness (base64url: 32 characters).
GENERATED_PASSWORD_BYTES = 24
PASSWORD_FILE_NAME = "api-password"


def basic_credentials(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) of an HTTP Basic `Authorization` header (RFC 7617), or None when the
    header is absent, of another scheme, not base64 or without the colon."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


@dataclass(slots=True)
class _Record:
    """One address's wrong root passwords: (time, keyed digest), and requests waiting now."""

    failures: deque[tuple[float, bytes]] = field(default_factory=lambda: deque(maxlen=MAX_FAILURES_TRACKED))
    waiting: int = 0

    def prune(self, now: float) -> None:
        while self.failures and self.failures[0][0] <= now - FAILURE_WINDOW:
            self.failures.popleft()

    def delay(self) -> float:
        over = len(self.failures) - MAX_FAILURES
        if over < 0:
            return 0.0
        return min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2 ** min(over, 16))


@dataclass(frozen=True, slots=True)
class Judgement:
    """What to answer a request: `status` None (let in), 401 or 429; after `wait` seconds."""

    status: int | None
    wait: float = 0.0
    retry_after: int | None = None


class AuthGuard:
    """Checks `Authorization` headers and keeps the per-address record of root's wrong passwords."""

    def __init__(self, password: str, clock: Callable[[], float] = trio.current_time) -> None:
        if not password:
            raise ValueError("the API password must not be empty")
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._user = self._digest(API_USER.encode())
        self._password = self._digest(password.encode("utf-8", "surrogateescape"))
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def _digest(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def _credentials(self, header: str | None) -> tuple[bool, bool, bytes] | None:
        """(user is root, password is right, password digest), or None without Basic credentials."""
        pair = basic_credentials(header)
        if pair is None:
            return None
        user, password = pair
        user_ok = hmac.compare_digest(self._digest(user), self._user)
        digest = self._digest(password)
        password_ok = hmac.compare_digest(digest, self._password)
        return user_ok, password_ok, digest

    def judge(self, address: str, header: str | None) -> Judgement:
        """Decide a request from `address`. A Judgement with a `wait` must be followed by
        `done_waiting(address)` once the wait is over (or cancelled)."""
        creds = self._credentials(header)
        if creds is None or not creds[0]:
            return Judgement(401)  # nothing to guess, nothing recorded
        _, password_ok, digest = creds
        address = client_key(address)
        now = self.clock()
        record = self._records.get(address)
        if record is not None:
            record.prune(now)
        wait = record.delay() if record is not None else 0.0
        if wait and record is not None and record.waiting >= MAX_WAITING_PER_ADDRESS:
            return Judgement(429, retry_after=max(1, math.ceil(wait)))
        if not password_ok:
            record = self._failed(address, record, digest, now)
        if wait:
            assert record is not None
            record.waiting += 1
        return Judgement(None if password_ok else 401, wait)

    def _failed(self, address: str, record: _Record | None, digest: bytes, now: float) -> _Record:
        if record is None:
            record = _Record()
        else:
            del self._records[address]  # re-inserted last: the least recently failing go first
        self._records[address] = record
        while len(self._records) > MAX_TRACKED:
            self._records.popitem(last=False)
        if all(not hmac.compare_digest(d, digest) for _, d in record.failures):
            record.failures.append((now, digest))  # a repeated wrong password tests nothing new
        return record

    def done_waiting(self, address: str) -> None:
        record = self._records.get(client_key(address))
        if record is not None and record.waiting:
            record.waiting -= 1

    def failures(self, address: str) -> int:
        """Distinct wrong passwords counted for `address` now (for tests and statistics)."""
        record = self._records.get(client_key(address))
        if record is None:
            return 0
        record.prune(self.clock())
        return len(record.failures)


def load_api_password(data_dir: str, password_file: str | None) -> tuple[str, bool]:
    """The API password and whether it was just generated (spec Part B §B.1.6).

    From `password_file` if given (first line, surrounding whitespace removed); otherwise from
    `<data_dir>/api-password`, which is created with mode 0600 and a random password the first
    time. Blocking file I/O: call it at start-up. Raises ValueError for an empty password file.
    """
    if password_file is not None:
        with open(password_file, encoding="utf-8") as f:
            password = f.readline().strip()
        if not password:
            raise ValueError(f"{password_file}: the API password file is empty")
        return password, False
    path = os.path.join(data_dir, PASSWORD_FILE_NAME)
    os.makedirs(data_dir, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_api_password(data_dir, path)[0], False
    password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(password + "\n")
    return password, True
