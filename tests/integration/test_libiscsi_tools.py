"""The demo target as libiscsi's command-line tools see it (issue #2 "What it must show")."""

from __future__ import annotations

import re

from tests.support import DEMO_IQN, Running, run_tool

GIB = 1 << 30


async def test_iscsi_ls_lists_demo_target_and_its_lun(demo: Running) -> None:
    out = (await run_tool("iscsi-ls", "-s", f"iscsi://{demo.portal}")).stdout.decode()
    assert f"Target:{DEMO_IQN} Portal:{demo.portal},1" in out
    m = re.search(r"Lun:0\s+Type:DIRECT_ACCESS \(Size:(\S+)\)", out)
    assert m, out
    # libiscsi prints (last LBA * block size) >> 20: 1023M for 1 GiB, as it does for tgtd
    assert m.group(1) in ("1G", "1024M", "1023M"), out


async def test_iscsi_inq_standard_data(demo: Running) -> None:
    out = (await run_tool("iscsi-inq", demo.lun_url)).stdout.decode()
    assert "Peripheral Device Type:DIRECT_ACCESS" in out or "Device Type:DIRECT_ACCESS" in out, out
    assert "PYSCSI" in out
    assert re.search(r"Version:\s*\S", out)


async def test_iscsi_inq_vpd_pages(demo: Running) -> None:
    extent = next(iter(demo.service.config.extents.values()))
    pages = (await run_tool("iscsi-inq", "-e", "1", "-c", "0", demo.lun_url)).stdout.decode()
    for page in ("0x80", "0x83", "0xb0", "0xb1", "0xb2"):
        assert page in pages.lower(), pages
    # iscsi-inq takes decimal page codes
    serial = (await run_tool("iscsi-inq", "-e", "1", "-c", "128", demo.lun_url)).stdout.decode()
    assert f"Unit Serial Number:[{extent.serial}]" in serial, serial
    ident = (await run_tool("iscsi-inq", "-e", "1", "-c", "131", demo.lun_url)).stdout.decode(errors="replace")
    assert f"Designator:[{DEMO_IQN},t,0x0001]" in ident, ident
    assert "Designator Type:(3) NAA" in ident, ident


async def test_iscsi_readcapacity16(demo: Running) -> None:
    out = (await run_tool("iscsi-readcapacity16", demo.lun_url)).stdout.decode()
    assert re.search(r"LOGICAL BLOCK LENGTH IN BYTES:\s*512\b", out), out
    m = re.search(r"Total size:\s*(\d+)", out)
    assert m and int(m.group(1)) == GIB, out


async def test_unknown_target_is_refused(demo: Running) -> None:
    res = await run_tool("iscsi-inq", f"iscsi://{demo.portal}/iqn.2026-11.org.example:nope/0", check=False)
    assert res.returncode != 0
