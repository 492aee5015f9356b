"""cephx and the gateway's key (issue #15): the RBD suites' usual cluster runs `auth none`; this one
(`cephx_cluster`, tests/rbd/cluster.py with `cephx=True`) authenticates every daemon and client.

- `--ceph-id gw` with client.gw's keyring where the conf's `keyring =` says serves the LU, caps
  `profile rbd` on the pool suffice (the reset events object included: a LUN reset is announced);
- with no keyring for the user, or a key the monitors refuse, the LU is NOT READY (02/04/03) and
  the log says which of the two, naming the user and never the key;
- no key (the base64 secret) appears in anything the server prints, at DEBUG.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import trio

from tests.integration.client import Client
from tests.integration.reliability import READY_MARKER
from tests.support import free_port

from .cluster import CephCluster
from .fixtures import image_name
from .test_two_gateways import (
    FUNCTION_COMPLETE,
    IQN,
    LOGICAL_UNIT_RESET,
    Gateway,
    blocks,
    configure,
    one_reset_attention,
    session,
)

NOT_READY_MANUAL_INTERVENTION = (0x02, 0x04, 0x03)
CAPS = ("mon", "profile rbd", "osd", "profile rbd pool=rbd")


class CephxGateway(Gateway):
    """A gateway authenticating as client.`ceph_id`, logging at DEBUG."""

    def __init__(self, data_dir: Path, conf: Path, ceph_id: str) -> None:
        super().__init__(data_dir, conf)
        self.ceph_id = ceph_id

    def argv(self) -> list[str]:
        argv = super().argv()
        argv[argv.index("--log-level") + 1] = "DEBUG"
        return [*argv, "--ceph-id", self.ceph_id]

    def printed(self) -> str:
        return self.output["stdout"] + self.output["stderr"]


def generated_key() -> str:
    """A well-formed cephx key no user has."""
    return subprocess.run(["ceph-authtool", "--gen-print-key"], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


async def not_ready(port: int) -> None:
    c = await Client.connect("127.0.0.1", port, name="iqn.2026-11.org.example:cephx")
    await c.login(IQN)
    res = await c.command(bytes(6))  # TEST UNIT READY, after the new nexus's UNIT ATTENTION
    if res.status == 2 and res.sense_key[0] == 6:
        res = await c.command(bytes(6))
    assert res.status == 2 and res.sense_key == NOT_READY_MANUAL_INTERVENTION, (res.status, res.sense_key)
    await c.logout()


async def test_ceph_id_with_its_keyring_serves_and_a_wrong_or_missing_key_is_not_ready(
        tmp_path: Path, cephx_cluster: CephCluster) -> None:
    gw_key = cephx_cluster.add_client("gw", *CAPS)
    # client.bad exists with one key; its keyring holds another
    bad_key = cephx_cluster.add_client("bad", *CAPS)
    wrong_key = generated_key()
    cephx_cluster.keyring("client.bad").write_text(f"[client.bad]\n\tkey = {wrong_key}\n")
    secrets = (gw_key, bad_key, wrong_key)
    data, port = tmp_path / "data", free_port()
    async with trio.open_nursery() as nursery:
        good = CephxGateway(data, cephx_cluster.conf, "gw")
        try:
            await good.start(nursery, "stderr", READY_MARKER)
            await configure(good.client(), port, image_name("cephx"))
            c = await session(port, "iqn.2026-11.org.example:cephx")
            assert (await c.write10(8, blocks(4, 3), fua=True)).status == 0
            assert (await c.read10(8, 4)).data == blocks(4, 3)
            assert await c.tmf(LOGICAL_UNIT_RESET) == FUNCTION_COMPLETE  # announced on the events object
            await one_reset_attention(c)
            await c.logout()
            assert "for resets through other gateways" not in good.printed()  # the watch was set up
            assert not good.problems, good.problems
            assert await good.stop() == 0
        finally:
            good.kill_quietly()

        for ceph_id, reason in (("nokey", "as client.nokey: no keyring with its key"),
                                ("bad", "as client.bad: the monitors refused it")):
            gw = CephxGateway(data, cephx_cluster.conf, ceph_id)  # the same configuration, another user
            try:
                await gw.start(nursery, "stderr", READY_MARKER)
                await not_ready(port)
                lines = [line for line in gw.printed().splitlines() if "is not served (LUN not ready)" in line]
                assert lines and reason in lines[0], gw.printed()[-3000:]
                assert await gw.stop() == 0
            finally:
                gw.kill_quietly()
            for secret in secrets:
                assert secret not in gw.printed()
        for secret in secrets:
            assert secret not in good.printed()
        assert "DEBUG" in good.printed()  # it did print at DEBUG
