"""README.md's `sh linux-initiator` blocks, run by open-iscsi in the QEMU guest (issue #13 item 9).

The server is started as tests/integration/test_readme.py starts it, and the README's `sh` blocks
that come before the first `sh linux-initiator` block are run on the host (they make the LAN
portal, the ACL and the CHAP and mutual-CHAP targets); then the guest, whose initiator name is the
one the README's ACL lists, runs the `sh linux-initiator` blocks in one shell, rewritten as the
host blocks are (the README's 192.0.2.10:3260 is 127.0.0.1:<port> on both sides: a relay on the
guest's loopback forwards to the host's port, so the address discovery answers is the one the
node records use). A failing command fails the boot; the output must show both targets
discovered, a disk attached and the automatic login.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import trio

from tests.integration.reliability import READY_MARKER
from tests.integration.test_readme import GUEST, ReadmeServer, Shell, Site, objects, readme_blocks, run_host_blocks

from .build import Guest
from .guest import boot, need_guest
from .test_linux_initiator import SCENARIO_TIMEOUT_S, TIMES, expect_checks, guest_env, report, unexplained_dmesg

pytestmark = pytest.mark.linux_initiator

#: the targets the README's blocks make for the Linux client
BASE = "iqn.2005-10.org.freenas.ctl"


@pytest.fixture(scope="module")
def guest() -> Guest:
    return need_guest()


async def test_readme_iscsiadm_blocks(guest: Guest, tmp_path: Path, nursery: trio.Nursery) -> None:
    t0 = time.monotonic()
    site = Site.make(tmp_path)
    server = ReadmeServer(site)
    shell = Shell(site)
    await server.start(nursery, "stderr", READY_MARKER)
    try:
        await shell.start()
        blocks = readme_blocks()
        await run_host_blocks(site, server, shell, nursery, blocks, until_tag=GUEST)
        guest_blocks = [b for b in blocks if b.tag == GUEST]
        m = re.search(r"# InitiatorName=(\S+)", guest_blocks[0].body)
        assert m, "the README's first Linux block should show the initiator name the ACL lists"
        acls = await objects(site.api_client(), "authorizedinitiator")
        assert any(m[1] in a["iscsi_target_initiator_initiators"] for a in acls), acls
        files = {f"readme/{i}.sh": site.rewrite(b.body) for i, b in enumerate(guest_blocks, 1)}
        env = guest_env("readme", INITIATOR=m[1], RELAY_PORT=str(site.lan))
        async with boot(guest, tmp_path, env, [site.lan], files) as b:
            await b.finished(SCENARIO_TIMEOUT_S)
    finally:
        shell.close()
        server.kill_quietly()
    TIMES["readme-total"] = time.monotonic() - t0
    report("readme", b, t0)
    expect_checks(b, ["iscsid", "readme-relay", "readme-iscsiadm-blocks"])
    out = "\n".join(line.removeprefix("README-OUT ") for line in b.lines if line.startswith("README-OUT "))
    portal = f"127.0.0.1:{site.lan},2"
    assert f"{portal} {BASE}:secure" in out and f"{portal} {BASE}:vault" in out, out
    assert "Attached scsi disk sd" in out, out
    # the last command lists the session --loginall=automatic made: secure only
    assert out.rstrip().splitlines()[-1].startswith("tcp:") and f"{BASE}:secure" in out.rstrip().splitlines()[-1]
    assert server.problems == []
    # the logouts close connections; nothing else may go wrong
    assert unexplained_dmesg(b, allowed=("detected conn error (1020)",)) == []
