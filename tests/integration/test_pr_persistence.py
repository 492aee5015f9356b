"""APTPL: persistent reservation registrations made with APTPL=1 survive a restart of the server
(SPC-4 §5.13.5.4); with APTPL=0 they do not."""

from __future__ import annotations

from pathlib import Path

import trio

from pyscsi_target.server.options import ServerOptions
from tests.support import DEMO_IQN, demo_options, free_port, start

from .apiclient import ISCSI, ApiClient
from .client import Client


def prout_register(key: int, *, aptpl: bool) -> tuple[bytes, bytes]:
    cdb = bytes([0x5F, 0x00, 0x00, 0, 0]) + (24).to_bytes(4, "big") + b"\0"
    params = bytes(8) + key.to_bytes(8, "big") + bytes(4) + bytes([0x01 if aptpl else 0]) + bytes(3)
    return cdb, params


def read_keys_cdb() -> bytes:
    return bytes([0x5E, 0x00]) + bytes(5) + (512).to_bytes(2, "big") + b"\0"


async def keys_after_restart(tmp_path: Path, *, aptpl: bool) -> list[int]:
    opts = demo_options(tmp_path / "data")
    host, port = opts.demo_portal.rsplit(":", 1)
    async with trio.open_nursery() as nursery:
        await start(nursery, opts)
        c = await Client.connect(host, int(port))
        await c.login(DEMO_IQN)
        await c.ready()
        cdb, params = prout_register(0x1122334455667788, aptpl=aptpl)
        res = await c.command(cdb, data=params)
        assert res.status == 0, res.sense_key
        await c.aclose()
        nursery.cancel_scope.cancel()
    again = ServerOptions(data_dir=opts.data_dir, api=f"127.0.0.1:{free_port()}", api_enabled=False)
    async with trio.open_nursery() as nursery:
        await start(nursery, again)
        c = await Client.connect(host, int(port))
        await c.login(DEMO_IQN)
        await c.ready()
        res = await c.command(read_keys_cdb(), read_len=512)
        assert res.status == 0, res.sense_key
        n = int.from_bytes(res.data[4:8], "big") // 8
        keys = [int.from_bytes(res.data[8 + 8 * i:16 + 8 * i], "big") for i in range(n)]
        await c.aclose()
        nursery.cancel_scope.cancel()
    return keys


async def test_aptpl_registration_survives_restart(tmp_path: Path) -> None:
    assert await keys_after_restart(tmp_path, aptpl=True) == [0x1122334455667788]


async def test_registration_without_aptpl_is_gone_after_restart(tmp_path: Path) -> None:
    assert await keys_after_restart(tmp_path, aptpl=False) == []


async def test_unreadable_reservations_keep_the_lun_not_ready_until_they_can_be_read(tmp_path: Path) -> None:
    """Issue #10 item 11: start-up logged "ignoring unreadable persistent reservations" and served
    the LU as if it had none, which breaks a cluster's fencing. It now answers NOT READY (02/04/03),
    the API says why, and the next apply after the file is put right serves it with its keys."""
    opts = demo_options(tmp_path / "data")
    host, port = opts.demo_portal.rsplit(":", 1)
    async with trio.open_nursery() as nursery:
        await start(nursery, opts)
        c = await Client.connect(host, int(port))
        await c.login(DEMO_IQN)
        await c.ready()
        cdb, params = prout_register(0x1122334455667788, aptpl=True)
        assert (await c.command(cdb, data=params)).status == 0
        await c.aclose()
        nursery.cancel_scope.cancel()
    [saved] = list((opts.data_dir / "pr").glob("*.json"))
    good_state = saved.read_bytes()
    saved.write_bytes(b"{ torn write")
    again = ServerOptions(data_dir=opts.data_dir, api=f"127.0.0.1:{free_port()}")
    async with trio.open_nursery() as nursery:
        await start(nursery, again)
        api = ApiClient.for_server(again)
        [ext] = (await api.get(f"{ISCSI}/extent/")).json()
        assert "persistent reservations" in ext["iscsi_target_extent_state"]
        c = await Client.connect(host, int(port))
        await c.login(DEMO_IQN)
        res = await c.command(read_keys_cdb(), read_len=512)
        while res.status == 2 and res.sense_key[0] == 6:  # the new nexus's unit attentions first
            res = await c.command(read_keys_cdb(), read_len=512)
        assert (res.status, res.sense_key) == (2, (0x2, 0x04, 0x03))
        await c.aclose()
        saved.write_bytes(good_state)
        reply = await api.put(f"{ISCSI}/extent/{ext['id']}/", {"iscsi_target_extent_comment": "retry"})
        assert reply.status == 200 and reply.json()["iscsi_target_extent_state"] is None, reply.body
        c = await Client.connect(host, int(port))
        await c.login(DEMO_IQN)
        await c.ready()
        res = await c.command(read_keys_cdb(), read_len=512)
        assert res.status == 0 and int.from_bytes(res.data[8:16], "big") == 0x1122334455667788
        await c.aclose()
        nursery.cancel_scope.cancel()
