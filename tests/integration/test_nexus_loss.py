"""I_T nexus loss releases a RESERVE(6) reservation at once (SPC-2 §5.5.1): another initiator's
command sent right after the holder disconnected or logged out never meets a stale reservation
(libiscsi Sanitize.Reservations followed by Sanitize.Reset depends on it)."""

from __future__ import annotations

import pytest

from tests.support import DEMO_IQN, Running

from .client import Client

RESERVE6 = bytes([0x16, 0, 0, 0, 0, 0])
TUR = bytes(6)
RESERVATION_CONFLICT = 0x18


async def open_session(run: Running, name: str, isid: int) -> Client:
    host, port = run.portal.rsplit(":", 1)
    c = await Client.connect(host, int(port), name=name, isid=isid)
    await c.login(DEMO_IQN)
    await c.ready()
    return c


async def test_logout_releases_the_reservation_before_its_response(demo: Running) -> None:
    other = await open_session(demo, "iqn.2026-11.org.example:other", 0x80_00_00_00_00_09)
    for _ in range(5):
        holder = await open_session(demo, "iqn.2026-11.org.example:holder", 0x80_00_00_00_00_08)
        assert (await holder.command(RESERVE6)).status == 0
        assert (await other.command(TUR)).status == RESERVATION_CONFLICT
        assert (await holder.logout()).response == 0
        # no waiting: once the Logout Response is in, the reservation is gone
        res = await other.command(TUR)
        assert res.status == 0, res.sense_key
        await holder.aclose()
    await other.aclose()


@pytest.mark.parametrize("rounds", [5])
async def test_disconnect_releases_the_reservation_for_the_very_next_command(demo: Running, rounds: int) -> None:
    """The holder closes its socket and another initiator's command follows at once, on another
    socket. Even if the server reads that command before it notices the end of the holder's
    connection, the reservation check looks at the holder's socket first (a live holder only)."""
    other = await open_session(demo, "iqn.2026-11.org.example:other", 0x80_00_00_00_00_09)
    for _ in range(rounds):
        holder = await open_session(demo, "iqn.2026-11.org.example:holder", 0x80_00_00_00_00_08)
        assert (await holder.command(RESERVE6)).status == 0
        assert (await other.command(TUR)).status == RESERVATION_CONFLICT
        await holder.aclose()
        res = await other.command(TUR)
        assert res.status == 0, res.sense_key
    await other.aclose()
