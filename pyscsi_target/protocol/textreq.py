"""Text Request handling in the full feature phase (RFC 7143 §11.10, §11.11, Appendix C).

SendTargets is answered from `LoginAuthority.send_targets()` as TargetName=/TargetAddress= pairs.
In a discovery session "All" lists every target the initiator may see and an iSCSI name lists
that target; in a normal session "All" MUST NOT be honoured (RFC 7143 Appendix C), so "All",
the empty value and the session's own name list only the session's target. Other keys are
negotiated as full-feature declarations (MaxRecvDataSegmentLength) or answered Reject /
NotUnderstood by negotiation.py. A response longer than the initiator's
MaxRecvDataSegmentLength is sent in pieces: C=1 with a Target Transfer Tag, the initiator asks
for the next piece with an empty Text Request carrying that tag (RFC 7143 §11.10.2/§11.11.4).
Multi-PDU *requests* (C=1) are refused with Reject 0x05, as LIO does (target-rules §1.4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..model import SessionType
from .authority import LoginAuthority
from .dataout import DataError
from .limits import RESERVED_TAG
from .negotiation import Negotiator
from .pdu import REJECT_INVALID_FIELD, REJECT_NOT_SUPPORTED, REJECT_PROTOCOL_ERROR, TextRequest, TextResponse
from .textkeys import TextError, encode_text, parse_text, split_text


@dataclass(slots=True)
class TextContext:
    session_type: SessionType
    initiator_name: str
    target_name: str | None
    authority: LoginAuthority
    negotiator: Negotiator
    max_segment: int  # the initiator's MaxRecvDataSegmentLength
    new_ttt: Callable[[], int]


@dataclass(slots=True)
class _Pending:
    itt: int
    ttt: int
    chunks: list[bytes] = field(default_factory=list)
    final: bool = True


class TextExchange:
    """The (single) text negotiation of a connection, with response continuation."""

    def __init__(self) -> None:
        self._pending: _Pending | None = None

    def handle(self, req: TextRequest, data: bytes | bytearray,
               ctx: TextContext) -> tuple[TextResponse, bytes]:
        """The Text Response (sequence numbers left to the caller) and its data; raises
        DataError for a Reject."""
        if req.cont:
            raise DataError(REJECT_NOT_SUPPORTED, "multi-PDU text requests are not supported")
        pending = self._pending
        if req.ttt != RESERVED_TAG and pending is not None and pending.chunks:
            if req.ttt != pending.ttt or req.itt != pending.itt:
                raise DataError(REJECT_INVALID_FIELD, "Text Request continues an unknown exchange")
            if data:
                raise DataError(REJECT_PROTOCOL_ERROR, "data in a continuation Text Request")
            return self._next_piece(pending, req.lun)
        if req.ttt != RESERVED_TAG and (pending is None or req.ttt != pending.ttt):
            raise DataError(REJECT_INVALID_FIELD, "Text Request with an unknown TTT")
        self._pending = None  # a new request (TTT 0xffffffff) resets the exchange (§11.10.4)
        try:
            pairs = parse_text(data)
        except TextError as exc:
            raise DataError(REJECT_PROTOCOL_ERROR, str(exc)) from exc
        answers = self._answer(pairs, ctx)
        chunks = split_text(encode_text(answers), ctx.max_segment)
        pending = _Pending(itt=req.itt, ttt=ctx.new_ttt(), chunks=chunks, final=req.final)
        self._pending = pending
        return self._next_piece(pending, req.lun)

    def _next_piece(self, pending: _Pending, lun: int) -> tuple[TextResponse, bytes]:
        chunk = pending.chunks.pop(0)
        more = bool(pending.chunks)
        # F=1 only when the initiator's request was final and nothing is left (RFC 7143 §11.11.1)
        final = pending.final and not more
        ttt = RESERVED_TAG if final else pending.ttt
        if final:
            self._pending = None
        return TextResponse(final=final, cont=more, lun=lun, itt=pending.itt, ttt=ttt), chunk

    def _answer(self, pairs: list[tuple[str, str]], ctx: TextContext) -> list[tuple[str, str]]:
        send_targets = [v for k, v in pairs if k == "SendTargets"]
        others = [(k, v) for k, v in pairs if k != "SendTargets"]
        if ctx.session_type is SessionType.DISCOVERY and not send_targets:
            raise DataError(REJECT_NOT_SUPPORTED, "a discovery session only answers SendTargets")
        answers = ctx.negotiator.negotiate(others, ffp=True)
        if send_targets:
            answers = self._send_targets(send_targets[0], ctx) + answers
        return answers

    @staticmethod
    def _send_targets(value: str, ctx: TextContext) -> list[tuple[str, str]]:
        if ctx.session_type is SessionType.DISCOVERY:
            if not value:
                return []
            which = value
        else:
            own = ctx.target_name or ""
            which = own if value in ("", "All") else value
        out: list[tuple[str, str]] = []
        for entry in ctx.authority.send_targets(ctx.initiator_name, which):
            out.append(("TargetName", entry.target_name))
            out.extend(("TargetAddress", address) for address in entry.addresses)
        return out
