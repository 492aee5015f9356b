"""Whatever CDB and Data-Out an initiator sends, `execute()` answers with a status, never an
exception (ARCHITECTURE.md: "never an exception past execute")."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pyscsi_target.scsi import execute
from pyscsi_target.scsi.table import SPECS
from pyscsi_target.scsi.types import CHECK_CONDITION, GOOD, RESERVATION_CONFLICT, ScsiRequest
from pyscsi_target.storage import MemoryBackend

from .util import NEXUS, identity, make_lu

STATUSES = {GOOD, CHECK_CONDITION, RESERVATION_CONFLICT}
OPCODES = sorted({s.opcode for s in SPECS})

cdbs = st.one_of(
    st.binary(max_size=20),
    st.tuples(st.sampled_from(OPCODES), st.binary(max_size=15)).map(lambda t: bytes([t[0]]) + t[1]),
)


@settings(max_examples=400, deadline=None)
@given(cdb=cdbs, data=st.one_of(st.none(), st.binary(max_size=2048)), lun=st.integers(0, 2))
def test_execute_never_raises(cdb: bytes, data: bytes | None, lun: int) -> None:
    lu = make_lu(MemoryBackend(64), identity(thin=True))
    res = execute(ScsiRequest(cdb=cdb, lun=lun, nexus=NEXUS, data_out=data), {0: lu})
    assert res.status in STATUSES
    assert (res.sense is not None) == (res.status == CHECK_CONDITION)
