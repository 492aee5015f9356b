"""Issue #16: the real Linux initiator (open-iscsi, dm-multipath) in a QEMU guest."""
