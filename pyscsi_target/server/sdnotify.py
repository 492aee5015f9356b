"""systemd's readiness protocol (sd_notify(3)) with the standard library only (issue #13 item 7).

Under a `Type=notify` unit, systemd passes the path of an AF_UNIX datagram socket in
`$NOTIFY_SOCKET`; the service sends newline-separated `KEY=value` assignments to it: `READY=1`
(with a `STATUS=` line) once the portals and the API listen, `STOPPING=1` when shutdown begins.
A path starting with `@` names a socket in Linux's abstract namespace (the `@` stands for a
leading NUL byte, sd_notify(3) "NOTES"). Without `$NOTIFY_SOCKET` (not run by systemd) every call
is a no-op. A failure to send is logged once as a WARNING and never stops the server: readiness
is a courtesy to the supervisor, not a condition of serving.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("pyscsi_target")

#: the environment variable systemd sets for Type=notify services (sd_notify(3))
NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"


def notify_address(value: str) -> str | bytes | None:
    """`$NOTIFY_SOCKET` as a socket address: a filesystem path, or bytes with a leading NUL for
    the abstract namespace (`@name`). None for an empty or unusable value (sd_notify(3) accepts
    only absolute paths and `@` names; `vsock:` addresses are not supported here)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def sd_notify(*assignments: str) -> bool:
    """Send `assignments` (e.g. "READY=1", "STATUS=...") as one datagram to `$NOTIFY_SOCKET`.
    True if sent; False when not under systemd or when sending failed (logged)."""
    value = os.environ.get(NOTIFY_SOCKET_ENV, "")
    if not value:
        return False
    address = notify_address(value)
    if address is None:
        log.warning("%s=%r is not a socket path or @abstract name: readiness not reported",
                    NOTIFY_SOCKET_ENV, value)
        return False
    message = "\n".join(assignments).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as exc:
        log.warning("cannot notify systemd through %s: %s", value, exc.strerror or exc)
        return False
    return True
