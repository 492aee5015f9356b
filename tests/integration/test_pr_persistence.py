"""APTPL: persistent reservation registrations made with APTPL=1 survive a restart of the server
(SPC-4 §5.13.5.4); with APTPL=0 they do not."""

from __future__ import annotations

from pathlib import Path

import trio

from pyscsi_target.server.options import ServerOptions
from tests.support import DEMO_IQN, demo_options, free_port, start

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
