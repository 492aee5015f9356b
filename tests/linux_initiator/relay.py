"""The per-connection relay behind a portal's `guestfwd` (issue #16): `python relay.py <port>`.

QEMU's user networking (slirp) accepts the guest's TCP connection to a portal address before it
runs this command, with the guest's connection as its stdin/stdout. On a real network a portal
that is not listening (deleted, target restarting) never accepts: the initiator's connect is
refused or its SYNs are lost, and the initiator's own timeouts decide. Closing the accepted
connection at once (what `nc 127.0.0.1 <port>` did when nothing listened) is something no network
does, and Debian 12's iscsid/Linux 6.1 could get stuck on it for ever (docs/linux-initiator.md).

So this relay behaves like a network that delays: while nothing listens on 127.0.0.1:<port> it
keeps the guest's connection open, holds what the guest sends (bounded), and retries the connect
every RETRY_INTERVAL_S for at most CONNECT_WINDOW_S; the guest's login timeout then decides, as
with lost SYNs. Once connected it pipes bytes both ways with bounded buffers; when either side
closes, what was already received for the other side is delivered and the relay exits (closing
both). It never answers anything itself: every byte the guest sees comes from the target.

Standalone (standard library only): QEMU runs it with the host's Python, stderr discarded.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import sys
import time

#: seconds between two connect attempts while the port does not listen
RETRY_INTERVAL_S = 0.1
#: seconds the relay keeps trying before it closes the guest's connection (longer than the
#: guest's login timeout, 15 s, so the guest gives up first, as with lost SYNs)
CONNECT_WINDOW_S = 60.0
#: bytes held per direction at most; a side is not read while its buffer is full
BUFFER_BYTES = 256 << 10
GUEST_IN, GUEST_OUT = 0, 1
#: connect errors that mean "nothing listens (yet)": retried
NOT_LISTENING = (errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH)


def connect(port: int, held: bytearray) -> socket.socket | None:
    """The connection to the target, or None when the guest closed first or the window is over.
    What the guest sends meanwhile goes into `held`."""
    deadline = time.monotonic() + CONNECT_WINDOW_S
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.connect(("127.0.0.1", port))
            return s
        except OSError as exc:
            s.close()
            if exc.errno not in NOT_LISTENING:
                return None
        if time.monotonic() >= deadline:
            return None
        watch = [GUEST_IN] if len(held) < BUFFER_BYTES else []
        readable, _, _ = select.select(watch, [], [], RETRY_INTERVAL_S)
        if readable:
            data = os.read(GUEST_IN, BUFFER_BYTES - len(held))
            if not data:
                return None  # the guest gave up
            held += data


def pump(target: socket.socket, to_target: bytearray) -> None:
    """Bytes both ways until a side closes; then the other side gets what is left for it."""
    to_guest = bytearray()
    tfd = target.fileno()
    for fd in (GUEST_IN, GUEST_OUT, tfd):
        os.set_blocking(fd, False)
    guest_open = target_open = True
    while True:
        if (not guest_open and not to_target) or (not target_open and not to_guest):
            return
        readers = []
        if guest_open and target_open and len(to_target) < BUFFER_BYTES:
            readers.append(GUEST_IN)
        if target_open and guest_open and len(to_guest) < BUFFER_BYTES:
            readers.append(tfd)
        writers = ([tfd] if to_target else []) + ([GUEST_OUT] if to_guest else [])
        readable, writable, _ = select.select(readers, writers, [])
        if GUEST_IN in readable:
            data = os.read(GUEST_IN, BUFFER_BYTES - len(to_target))
            guest_open = bool(data)
            to_target += data
        if tfd in readable:
            data = os.read(tfd, BUFFER_BYTES - len(to_guest))
            target_open = bool(data)
            to_guest += data
        if tfd in writable:
            del to_target[:os.write(tfd, to_target)]
        if GUEST_OUT in writable:
            del to_guest[:os.write(GUEST_OUT, to_guest)]


def main(argv: list[str]) -> int:
    port = int(argv[1])
    held = bytearray()
    try:
        target = connect(port, held)
        if target is None:
            return 0
        with target:
            pump(target, held)
    except OSError:  # a reset or a broken pipe ends the relay like a close
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
