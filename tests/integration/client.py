"""An async iSCSI test client over a trio socket, built on the sans-IO `tests.initiator.Initiator`.

Small but honest: it negotiates, sends immediate and unsolicited data as negotiated, answers R2Ts,
reassembles Data-In and checks DataSN order. Integration tests use it where libiscsi's tools have
no command (writing and reading back data).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import trio

from tests.initiator import (
    DATA_IN,
    LOGIN_RESPONSE,
    LOGOUT_RESPONSE,
    NOP_IN,
    R2T,
    REJECT,
    SCSI_RESPONSE,
    TMF_RESPONSE,
    Initiator,
    TargetPdu,
)

DEFAULT_KEYS = {
    "HeaderDigest": "None",
    "DataDigest": "None",
    "MaxConnections": "1",
    "InitialR2T": "No",
    "ImmediateData": "Yes",
    "MaxRecvDataSegmentLength": "262144",
    "MaxBurstLength": "1048576",
    "FirstBurstLength": "65536",
    "DefaultTime2Wait": "2",
    "DefaultTime2Retain": "0",
    "MaxOutstandingR2T": "1",
    "DataPDUInOrder": "Yes",
    "DataSequenceInOrder": "Yes",
    "ErrorRecoveryLevel": "0",
}


class LoginError(Exception):
    def __init__(self, status_class: int, status_detail: int) -> None:
        super().__init__(f"login failed: status {status_class:#04x}{status_detail:02x}")
        self.status_class = status_class
        self.status_detail = status_detail


@dataclass
class Result:
    status: int
    data: bytes = b""
    sense: bytes = b""
    residual: int = 0
    overflow: bool = False
    underflow: bool = False
    pdus: list[TargetPdu] = field(default_factory=list)

    @property
    def sense_key(self) -> tuple[int, int, int]:
        s = self.sense
        return (s[2] & 0x0F, s[12], s[13]) if len(s) >= 14 else (0, 0, 0)


class Client:
    def __init__(self, sock: trio.SocketStream, initiator: Initiator) -> None:
        self.sock = sock
        self.ini = initiator
        self.params: dict[str, str] = {}
        self._pending: list[TargetPdu] = []

    @classmethod
    async def connect(cls, host: str, port: int, *, name: str = "iqn.2026-11.org.example:test-client",
                      isid: int = 0x80_12_34_56_00_01) -> Client:
        sock = await trio.open_tcp_stream(host, port)
        return cls(sock, Initiator(name=name, isid=isid))

    @classmethod
    async def session(cls, portal: str, target: str, **kw: Any) -> Client:
        """Connected to `portal` ("host:port"), logged in to `target` and past LUN 0's start-up
        unit attention: what most end-to-end tests start with."""
        host, port = portal.rsplit(":", 1)
        client = await cls.connect(host, int(port), **kw)
        await client.login(target)
        await client.ready()
        return client

    async def aclose(self) -> None:
        await self.sock.aclose()

    async def send(self, data: bytes) -> None:
        await self.sock.send_all(data)

    async def recv_pdu(self, timeout: float = 10) -> TargetPdu:
        with trio.fail_after(timeout):
            while not self._pending:
                chunk = await self.sock.receive_some(1 << 20)
                if not chunk:
                    raise EOFError("target closed the connection")
                self._pending.extend(self.ini.receive(chunk))
        return self._pending.pop(0)

    async def login(self, target: str | None, extra: dict[str, str] | None = None,
                    session_type: str = "Normal") -> TargetPdu:
        """Security stage skipped (AuthMethod=None), then operational negotiation to full feature."""
        keys = {"InitiatorName": self.ini.name, "SessionType": session_type, "AuthMethod": "None"}
        if target is not None:
            keys["TargetName"] = target
        await self.send(self.ini.login(keys, csg=0, nsg=1, transit=True))
        rsp = await self._login_response()
        op = dict(DEFAULT_KEYS) if session_type == "Normal" else {
            "HeaderDigest": "None", "DataDigest": "None", "MaxRecvDataSegmentLength": "262144"}
        op.update(extra or {})
        await self.send(self.ini.login(op, csg=1, nsg=3, transit=True, tsih=0))
        rsp = await self._login_response()
        self.params = rsp.key_dict
        self.ini.cmdsn = rsp.exp_cmdsn
        self.tsih = rsp.tsih
        return rsp

    async def _login_response(self) -> TargetPdu:
        rsp = await self.recv_pdu()
        assert rsp.opcode == LOGIN_RESPONSE, rsp.opcode
        if rsp.status_class:
            raise LoginError(rsp.status_class, rsp.status_detail)
        return rsp

    def _param_int(self, key: str, default: int) -> int:
        v = self.params.get(key)
        return int(v) if v is not None and v.isdigit() else default

    async def command(self, cdb: bytes, *, read_len: int = 0, data: bytes | None = None, lun: int = 0,
                      edtl: int | None = None) -> Result:
        write = data is not None
        data = data or b""
        edtl = (len(data) if write else read_len) if edtl is None else edtl
        immediate_ok = self.params.get("ImmediateData", "Yes") == "Yes"
        initial_r2t = self.params.get("InitialR2T", "Yes") == "Yes"
        first_burst = self._param_int("FirstBurstLength", 65536)
        mrdsl = self._param_int("MaxRecvDataSegmentLength", 8192)  # the target's, declared to us
        unsolicited = min(len(data), first_burst) if write and not initial_r2t else 0
        immediate = min(unsolicited, mrdsl) if immediate_ok else 0
        itt = self.ini.new_itt()
        await self.send(self.ini.scsi_command(cdb, read=read_len > 0, write=write, edtl=edtl, lun=lun,
                                              data=data[:immediate], itt=itt))
        sent = immediate
        datasn = 0
        while sent < unsolicited:  # unsolicited Data-Out up to FirstBurstLength
            n = min(mrdsl, unsolicited - sent)
            await self.send(self.ini.data_out(itt, sent, data[sent:sent + n], datasn=datasn,
                                              final=sent + n == unsolicited, lun=lun))
            sent += n
            datasn += 1
        buf = bytearray()
        pdus: list[TargetPdu] = []
        expect_datasn = 0
        while True:
            pdu = await self.recv_pdu()
            pdus.append(pdu)
            if pdu.opcode == R2T:
                off, length, ttt = pdu.buffer_offset, pdu.desired_length, pdu.ttt
                sn = 0
                end = off + length
                while off < end:
                    n = min(mrdsl, end - off)
                    await self.send(self.ini.data_out(itt, off, data[off:off + n], ttt=ttt, datasn=sn,
                                                      final=off + n == end, lun=lun))
                    off += n
                    sn += 1
            elif pdu.opcode == DATA_IN:
                assert pdu.datasn == expect_datasn, (pdu.datasn, expect_datasn)
                expect_datasn += 1
                assert pdu.buffer_offset == len(buf)
                buf += pdu.data
                if pdu.status_present:
                    return Result(pdu.status, bytes(buf), b"", pdu.residual, pdu.overflow, pdu.underflow, pdus)
            elif pdu.opcode == SCSI_RESPONSE:
                return Result(pdu.status, bytes(buf), pdu.sense if pdu.data else b"", pdu.residual,
                              pdu.overflow, pdu.underflow, pdus)
            elif pdu.opcode == REJECT:
                raise AssertionError(f"Reject reason {pdu.reason:#x}")
            elif pdu.opcode == NOP_IN:
                continue
            else:
                raise AssertionError(f"unexpected opcode {pdu.opcode:#x}")

    async def ready(self, lun: int = 0, attempts: int = 8) -> None:
        """TEST UNIT READY until GOOD, consuming unit attentions (power on/reset on a new nexus,
        SAM-5 §5.14) the way initiators do after login."""
        for _ in range(attempts):
            res = await self.command(bytes(6), lun=lun)
            if res.status == 0:
                return
            assert res.sense_key[0] == 6, res.sense_key  # only UNIT ATTENTION is expected here
        raise AssertionError("unit attentions did not clear")

    async def read10(self, lba: int, nblocks: int, block_size: int = 512, lun: int = 0) -> Result:
        cdb = struct.pack(">BBIBHB", 0x28, 0, lba, 0, nblocks, 0)
        return await self.command(cdb, read_len=nblocks * block_size, lun=lun)

    async def write10(self, lba: int, data: bytes, block_size: int = 512, *, fua: bool = False,
                      lun: int = 0) -> Result:
        cdb = struct.pack(">BBIBHB", 0x2A, 0x08 if fua else 0, lba, 0, len(data) // block_size, 0)
        return await self.command(cdb, data=data, lun=lun)

    async def sync_cache(self, lun: int = 0) -> Result:
        return await self.command(bytes([0x35]) + bytes(9), lun=lun)

    async def tmf(self, function: int, *, lun: int = 0) -> int:
        """A task management function (RFC 7143 §11.5, e.g. 5 LOGICAL UNIT RESET); the Response
        field of its TMF response."""
        await self.send(self.ini.tmf(function, lun=lun))
        while True:
            pdu = await self.recv_pdu()
            if pdu.opcode == TMF_RESPONSE:
                return int(pdu.response)
            assert pdu.opcode == NOP_IN, f"unexpected opcode {pdu.opcode:#x}"

    async def logout(self) -> TargetPdu:
        await self.send(self.ini.logout(0))
        while True:
            pdu = await self.recv_pdu()
            if pdu.opcode == LOGOUT_RESPONSE:
                return pdu
