"""HTTP Basic authentication for the API: user `root`, one password, and slowing of guessers.

Spec Part B §B.1.6 and target-rules §5.4. The password is kept only as an HMAC-SHA256 digest under
a per-process random key; a presented user and password are digested the same way and compared with
`hmac.compare_digest`, always both, so the answer time does not depend on which part was wrong.
An address that sends `MAX_FAILURES` wrong credentials within `FAILURE_WINDOW` seconds is answered
429 with `Retry-After` for `LOCKOUT_SECONDS`, even with right credentials. A request without
credentials is asked for them (401) without counting as a failure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

#: The only user FreeNAS let in (spec Part A §1.2).
API_USER = "root"
#: Realm in `WWW-Authenticate` (spec Part B §B.1.6).
REALM = "pyscsi-target"
#: Wrong logins from one address before it is refused; no source prescribes a number
#: (target-rules §5.4), this is our choice: a typo or two never locks a person out.
MAX_FAILURES = 5
#: Seconds over which those failures are counted.
FAILURE_WINDOW = 60.0
#: Seconds an address is refused once it reached MAX_FAILURES.
LOCKOUT_SECONDS = 60.0
#: Addresses tracked at once; the oldest are forgotten first (bounded memory under a flood).
MAX_TRACKED = 10_000
#: Length of a generated password, in bytes of randomness (base64url: 32 characters).
GENERATED_PASSWORD_BYTES = 24
PASSWORD_FILE_NAME = "api-password"


class AuthGuard:
    """Checks `Authorization` headers and keeps the per-address failure record."""

    def __init__(self, password: str, clock: Callable[[], float] = time.monotonic) -> None:
        if not password:
            raise ValueError("the API password must not be empty")
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._user = self._digest(API_USER.encode())
        self._password = self._digest(password.encode("utf-8", "surrogateescape"))
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}

    def _digest(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def verdict(self, header: str | None) -> bool | None:
        """True: right credentials; False: wrong ones; None: no Basic credentials at all."""
        if header is None:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, _, password = decoded.partition(b":")
        user_ok = hmac.compare_digest(self._digest(user), self._user)
        password_ok = hmac.compare_digest(self._digest(password), self._password)
        return user_ok and password_ok

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again, or None if it is not locked out."""
        until = self._locked_until.get(address)
        if until is None:
            return None
        remaining = until - self.clock()
        if remaining <= 0:
            del self._locked_until[address]
            return None
        return max(1, math.ceil(remaining))

    def failed(self, address: str) -> None:
        now = self.clock()
        recent = [t for t in self._failures.pop(address, []) if now - t < FAILURE_WINDOW]
        recent.append(now)
        if len(recent) >= MAX_FAILURES:
            self._locked_until[address] = now + LOCKOUT_SECONDS
            recent = []
        self._failures[address] = recent
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)
        while len(self._locked_until) > MAX_TRACKED:
            del self._locked_until[next(iter(self._locked_until))]

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


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
