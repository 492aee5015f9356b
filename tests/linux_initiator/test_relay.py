"""The guestfwd relay (relay.py, issue #16) without QEMU: the "guest" is one end of a socketpair,
the other end is the relay's stdin/stdout, as slirp gives it."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support import free_port

from .guest import RELAY, RELAY_PYTHON

#: seconds any single step may take
STEP_TIMEOUT_S = 10.0
#: seconds the guest's connection must stay open while nothing listens (relay.py retries every
#: 0.1 s: several attempts fail in this time)
HELD_S = 1.0


@contextmanager
def relay(port: int) -> Iterator[tuple[socket.socket, subprocess.Popen[bytes]]]:
    guest, theirs = socket.socketpair()
    proc = subprocess.Popen([RELAY_PYTHON, "-I", "-S", str(RELAY), str(port)], stdin=theirs.fileno(),
                            stdout=theirs.fileno(), stderr=subprocess.DEVNULL)
    theirs.close()
    try:
        guest.settimeout(STEP_TIMEOUT_S)
        yield guest, proc
    finally:
        guest.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_holds_the_connection_until_the_port_listens_then_relays_both_ways() -> None:
    port = free_port()
    with relay(port) as (guest, proc):
        guest.sendall(b"login request")
        guest.settimeout(HELD_S)
        with pytest.raises(TimeoutError):  # nothing listens: no close, no bytes (as a lost SYN)
            guest.recv(100)
        assert proc.poll() is None
        guest.settimeout(STEP_TIMEOUT_S)
        with socket.create_server(("127.0.0.1", port)) as listener:
            listener.settimeout(STEP_TIMEOUT_S)
            target, _ = listener.accept()
            with target:
                target.settimeout(STEP_TIMEOUT_S)
                got = b""
                while len(got) < len(b"login request"):
                    got += target.recv(100)
                assert got == b"login request"
                big = bytes(range(256)) * 2048  # 512 KiB: more than the relay's buffer
                target.sendall(b"response")
                assert guest.recv(100) == b"response"
                guest.sendall(big)
                relayed = bytearray()
                while len(relayed) < len(big):
                    relayed += target.recv(1 << 20)
                assert relayed == big
                target.sendall(b"last words")
            # the target closed: the guest gets what was sent, then EOF, and the relay exits
            got = b""
            while chunk := guest.recv(100):
                got += chunk
            assert got == b"last words"
            assert proc.wait(STEP_TIMEOUT_S) == 0


def test_exits_when_the_guest_gives_up_while_nothing_listens() -> None:
    with relay(free_port()) as (guest, proc):
        guest.sendall(b"login request")
        guest.shutdown(socket.SHUT_WR)
        assert proc.wait(STEP_TIMEOUT_S) == 0
        assert guest.recv(100) == b""
