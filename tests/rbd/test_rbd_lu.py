"""An RBD image as a logical unit, without the server: what the SCSI core asks of it beyond reads
and writes (issue #15 item 1)."""

from __future__ import annotations

from pyscsi_target.scsi import execute
from pyscsi_target.scsi.host import STANDALONE
from pyscsi_target.scsi.lu import LogicalUnit, LuIdentity
from pyscsi_target.scsi.types import Nexus, ScsiRequest
from pyscsi_target.storage import RbdCluster

from .cluster import POOL
from .fixtures import image_name

NEXUS = Nexus("iqn.i,i,0x1", "iqn.t,t,0x1")


def test_block_erase_deallocates_every_object(rbd_cluster: RbdCluster) -> None:
    """SANITIZE BLOCK ERASE in 1 MiB steps only zeroed 4 MiB objects (they stayed mapped, and
    libiscsi's Sanitize.BlockErase found MAPPED descriptors): it steps by the unmap granularity."""
    image = image_name("erase")
    rbd_cluster.create_image(POOL, image, 16 << 20)  # 4 objects of 4 MiB
    backend = rbd_cluster.open(POOL, image, 512, False)
    try:
        assert backend.unmap_granularity == 4 << 20
        backend.write_same(0, backend.num_blocks, bytes([7]) * 512)
        assert list(backend.allocation(0, backend.num_blocks)) == [(0, backend.num_blocks, True)]
        lu = LogicalUnit(backend, LuIdentity(serial="s", naa="0x6589cfc000000bbbbbbbbbbbbbbbbbbb", thin=True),
                         host=STANDALONE)
        execute(ScsiRequest(bytes(6), 0, NEXUS), {0: lu})  # the power-on UNIT ATTENTION
        res = execute(ScsiRequest(bytes([0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]), 0, NEXUS, None, 1), {0: lu})
        if res.final is not None:
            res = res.final()
        assert res.status == 0, res.sense
        assert list(backend.allocation(0, backend.num_blocks)) == [(0, backend.num_blocks, False)]
        assert bytes(backend.read(0, 8)) == bytes(8 * 512)
    finally:
        backend.close()
        rbd_cluster.remove_image(POOL, image)
