"""SANITIZE as a background operation against the real server (issue #5; SBC-4 §4.11, §5.30):
while it runs, other sessions see NOT READY / SANITIZE IN PROGRESS with a progress indication
that grows (REQUEST SENSE, TEST UNIT READY); it goes on through a LUN reset, ABORT TASK, logout,
connection loss and a reconnect; an IMMED=0 command is answered when it ends, an IMMED=1 command
at once. The LU is 48 MiB, so that at SANITIZE_BYTES_PER_SECOND (32 MiB/s) each operation takes
1.5 s: long enough to watch, short enough for a test.

No test sleeps: each wait is for a reply from the target (the IMMED=0 response, REQUEST SENSE
until the progress moves on) or, where no reply exists, for the server's own end-of-operation
event (`SanitizeJob.wait`), each bounded by trio.fail_after.
"""

from __future__ import annotations

import struct
from pathlib import Path

import trio

from pyscsi_target.model import Extent, LunMapping, Target, TargetGroup
from pyscsi_target.model.config import EXTENT_FILE
from pyscsi_target.model.extents import new_naa, new_serial
from pyscsi_target.scsi.lu import SANITIZE_FAILED, SANITIZE_IDLE, SANITIZE_RUNNING, LogicalUnit
from pyscsi_target.scsi.sanitize_job import SANITIZE_BYTES_PER_SECOND
from tests.initiator import RESERVED_TAG, TMF_RESPONSE
from tests.support import Running, demo_options, start

from .client import Client, Result
from .reliability import handler_of, host_port, open_session

LU_BYTES = 48 << 20
BS = 512
LAST_LBA = LU_BYTES // BS - 1
PATTERN = b"\xc3\x3c\x5a\xa5"
GOOD, CHECK_CONDITION = 0x00, 0x02
IN_PROGRESS = (0x02, 0x04, 0x1B)
POWER_ON_RESET = (0x06, 0x29, 0x00)
NO_SENSE = (0x00, 0x00, 0x00)
OVERWRITE, BLOCK_ERASE = 0x01, 0x02
IMMED = 0x80
TUR = bytes(6)
REQUEST_SENSE = bytes([0x03, 0, 0, 0, 18, 0])
TMF_ABORT_TASK, TMF_LUN_RESET = 1, 5
TMF_FUNCTION_COMPLETE = 0
ISSUER, ISSUER_ISID = "iqn.2026-11.org.example:sanitizer", 0x80_00_00_5A_00_01
WATCHER, WATCHER_ISID = "iqn.2026-11.org.example:watcher", 0x80_00_00_5A_00_02
#: seconds any single step may take (real time): a whole operation takes LU_BYTES / 32 MiB/s
STEP_TIMEOUT_S = 4 * LU_BYTES / SANITIZE_BYTES_PER_SECOND + 10
#: an LU whose sanitize takes 32 s: still running when the server shuts down
LONG_LU_BYTES = 1 << 30
#: seconds a shutdown may take while a sanitize runs: it stops at its next 1 MiB step (~31 ms)
SHUTDOWN_BOUND_S = 5.0


def sanitize_cdb(sa: int, length: int = 0, flags: int = 0) -> bytes:
    """SANITIZE (SBC-4 §5.30.1): service action, IMMED, PARAMETER LIST LENGTH."""
    return struct.pack(">BB5xHB", 0x48, flags | sa, length, 0)


def overwrite_params(pattern: bytes) -> bytes:
    """OVERWRITE parameter list (SBC-4 §5.30.3): one pass, INITIALIZATION PATTERN."""
    return struct.pack(">BxH", 1, len(pattern)) + pattern


async def add_small_lu(run: Running, size: int = LU_BYTES) -> tuple[str, LogicalUnit]:
    """A second target with one fresh `size` bytes file LU on the demo portal: (its IQN, its LU)."""
    svc = run.service
    cfg = svc.config.copy()
    tid = cfg.new_id("targets")
    cfg.targets[tid] = Target(id=tid, name="sanitize")
    gid = cfg.new_id("targetgroups")
    cfg.targetgroups[gid] = TargetGroup(id=gid, target=tid, portalgroup=next(iter(cfg.portals)))
    eid = cfg.new_id("extents")
    path = run.options.data_dir / "extents" / "sanitize.img"
    cfg.extents[eid] = Extent(id=eid, name="sanitize", type=EXTENT_FILE, path=str(path), filesize=str(size),
                              naa=new_naa(cfg), serial=new_serial(cfg))
    mid = cfg.new_id("mappings")
    cfg.mappings[mid] = LunMapping(id=mid, target=tid, extent=eid, lunid=0)
    await svc.apply(cfg)
    return cfg.target_iqn(cfg.targets[tid]), svc.lun_map(tid)[0]


def sense_and_progress(sense: bytes) -> tuple[tuple[int, int, int], int | None]:
    """(key, ASC, ASCQ) and the PROGRESS INDICATION (None without SKSV) of fixed-format sense."""
    key = (sense[2] & 0x0F, sense[12], sense[13])
    progress = struct.unpack_from(">H", sense, 16)[0] if sense[15] & 0x80 else None
    return key, progress


async def request_sense(c: Client) -> tuple[tuple[int, int, int], int | None]:
    res = await c.command(REQUEST_SENSE, read_len=18)
    assert res.status == GOOD, res.sense_key
    return sense_and_progress(res.data)


async def progress_beyond(c: Client, seen: int) -> int:
    """REQUEST SENSE until the operation is reported in progress beyond `seen` (one 1 MiB step
    takes ~31 ms: the replies themselves pace this loop); the progress reported."""
    while True:
        key, progress = await request_sense(c)
        if key == IN_PROGRESS and progress is not None and progress > seen:
            return progress
        assert key in (IN_PROGRESS, NO_SENSE), key  # NO SENSE: the SANITIZE has not arrived yet


async def tur_in_progress(c: Client) -> int:
    """TEST UNIT READY is refused with NOT READY, SANITIZE IN PROGRESS: the progress it carries."""
    res = await c.command(TUR)
    assert res.status == CHECK_CONDITION
    key, progress = sense_and_progress(res.sense)
    assert key == IN_PROGRESS and progress is not None, (key, progress)
    return progress


async def expect_unit_attention(c: Client) -> None:
    """The first command of a nexus after a reset, or of a new nexus: 29/00 (SAM-5 §5.14)."""
    res = await c.command(TUR)
    assert res.status == CHECK_CONDITION and res.sense_key == POWER_ON_RESET, (res.status, res.sense_key)


async def tmf(c: Client, function: int, *, lun: int = 0, referenced_itt: int = RESERVED_TAG) -> int:
    """A task management function (RFC 7143 §11.5); the TMF response's Response field."""
    await c.send(c.ini.tmf(function, lun=lun, referenced_itt=referenced_itt))
    rsp = await c.recv_pdu()
    assert rsp.opcode == TMF_RESPONSE, rsp.opcode
    return rsp.response


async def login_only(portal: str, target: str, name: str, isid: int) -> Client:
    """Log in without TEST UNIT READY until GOOD (it cannot be GOOD while the sanitize runs)."""
    c = await Client.connect(*host_port(portal), name=name, isid=isid)
    await c.login(target)
    return c


async def lose_connection(run: Running, c: Client, name: str, isid: int) -> None:
    """Close the socket without logging out; returns once the server has ended that connection
    (and with it the I_T nexus, SAM-5 §6.3.4)."""
    handler = handler_of(run.service, name, isid)
    await c.aclose()
    await handler.closed.wait()


async def read_block(c: Client, lba: int) -> bytes:
    res = await c.read10(lba, 1)
    assert res.status == GOOD, res.sense_key
    return res.data


async def test_progress_then_completion_through_a_lun_reset_and_a_reconnect(demo: Running) -> None:
    iqn, lu = await add_small_lu(demo)
    issuer = await open_session(demo.portal, iqn, name=ISSUER, isid=ISSUER_ISID)
    watcher = await open_session(demo.portal, iqn, name=WATCHER, isid=WATCHER_ISID)
    assert (await issuer.write10(0, b"old data" * (BS // 8))).status == GOOD
    params = overwrite_params(PATTERN)
    answered: dict[str, Result] = {}

    async def sanitize() -> None:  # IMMED=0: the response comes when the operation has ended
        answered["sanitize"] = await issuer.command(sanitize_cdb(OVERWRITE, len(params)), data=params)

    with trio.fail_after(STEP_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sanitize)
            first = await progress_beyond(watcher, -1)
            later = await progress_beyond(watcher, first)  # it moves on
            assert (await tmf(watcher, TMF_LUN_RESET, lun=0)) == TMF_FUNCTION_COMPLETE
            await expect_unit_attention(watcher)
            after_reset = await tur_in_progress(watcher)  # the reset did not stop it
            assert after_reset >= later
            await lose_connection(demo, watcher, WATCHER, WATCHER_ISID)
            watcher = await login_only(demo.portal, iqn, WATCHER, WATCHER_ISID)  # the same initiator port
            await expect_unit_attention(watcher)
            assert await tur_in_progress(watcher) >= after_reset
    assert answered["sanitize"].status == GOOD
    assert lu.sanitize_state == SANITIZE_IDLE
    assert await request_sense(watcher) == (NO_SENSE, None)
    assert (await watcher.command(TUR)).status == GOOD
    block = PATTERN * (BS // len(PATTERN))
    assert await read_block(watcher, 0) == block  # the old data is gone
    assert await read_block(watcher, LAST_LBA) == block
    await expect_unit_attention(issuer)  # the LUN reset, reported to the issuer's nexus too
    assert await read_block(issuer, LAST_LBA // 2) == block
    await issuer.logout()
    await watcher.logout()


async def test_immed_1_answers_at_once_and_the_operation_outlives_logout(demo: Running) -> None:
    iqn, lu = await add_small_lu(demo)
    issuer = await open_session(demo.portal, iqn, name=ISSUER, isid=ISSUER_ISID)
    assert (await issuer.write10(8, b"x" * BS)).status == GOOD
    with trio.fail_after(STEP_TIMEOUT_S):
        res = await issuer.command(sanitize_cdb(BLOCK_ERASE, flags=IMMED))
        assert res.status == GOOD  # status as soon as the CDB was validated (SBC-4 §5.30.1)
        job = lu.sanitize_job
        assert job is not None and job.immed
        key, progress = await request_sense(issuer)
        assert key == IN_PROGRESS and progress is not None
        assert (await issuer.logout()).response == 0  # the logout does not wait for the operation
        assert lu.sanitize_state == SANITIZE_RUNNING
        await trio.to_thread.run_sync(job.wait)  # the server's end-of-operation event
    assert lu.sanitize_state == SANITIZE_IDLE
    again = await open_session(demo.portal, iqn, name=ISSUER, isid=ISSUER_ISID)
    assert await read_block(again, 8) == bytes(BS)  # erased: deallocated blocks read as zeroes
    await again.logout()


async def test_aborted_and_disconnected_issuer_the_operation_completes(demo: Running) -> None:
    """libiscsi Sanitize.Reset's story: ABORT TASK on the IMMED=0 SANITIZE, then the issuer's
    connection is lost; a new session finds the operation still running, then finished."""
    iqn, lu = await add_small_lu(demo)
    issuer = await open_session(demo.portal, iqn, name=ISSUER, isid=ISSUER_ISID)
    params = overwrite_params(PATTERN)
    itt = issuer.ini.new_itt()
    with trio.fail_after(STEP_TIMEOUT_S):
        await issuer.send(issuer.ini.scsi_command(sanitize_cdb(OVERWRITE, len(params)), write=True,
                                                  edtl=len(params), data=params, itt=itt))
        await progress_beyond(issuer, -1)  # it has started
        job = lu.sanitize_job
        assert job is not None and not job.ended
        assert (await tmf(issuer, TMF_ABORT_TASK, referenced_itt=itt)) == TMF_FUNCTION_COMPLETE
        await tur_in_progress(issuer)  # aborting the command does not stop the operation
        await lose_connection(demo, issuer, ISSUER, ISSUER_ISID)  # promptly: the operation goes on
        again = await login_only(demo.portal, iqn, ISSUER, ISSUER_ISID)
        await expect_unit_attention(again)
        await tur_in_progress(again)
        await trio.to_thread.run_sync(job.wait)
    assert job.result is not None and job.result.status == GOOD
    assert (await again.command(TUR)).status == GOOD
    assert await read_block(again, LAST_LBA) == PATTERN * (BS // len(PATTERN))
    await again.logout()


async def test_shutdown_stops_a_running_operation_and_joins_it(tmp_path: Path) -> None:
    """Issue #14: the operation belongs to the service's nursery. A shutdown while it runs stops it
    at its next step and joins its thread before the extents are closed: bounded, and nothing
    writes to the LU's file afterwards. The medium is not sanitized: failure mode."""
    async with trio.open_nursery() as nursery:
        run = await start(nursery, demo_options(tmp_path / "data"))
        iqn, lu = await add_small_lu(run, LONG_LU_BYTES)
        issuer = await open_session(run.portal, iqn, name=ISSUER, isid=ISSUER_ISID)
        with trio.fail_after(STEP_TIMEOUT_S):
            assert (await issuer.command(sanitize_cdb(BLOCK_ERASE, flags=IMMED))).status == GOOD
            await progress_beyond(issuer, -1)
        job = lu.sanitize_job
        assert job is not None and not job.ended
        await issuer.aclose()
        shutdown_at = trio.current_time()
        nursery.cancel_scope.cancel()
    assert trio.current_time() - shutdown_at < SHUTDOWN_BOUND_S
    assert job.ended and lu.sanitize_state == SANITIZE_FAILED
    assert job.done_bytes < LONG_LU_BYTES
    assert job.result is not None and job.result.status == CHECK_CONDITION
