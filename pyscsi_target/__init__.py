"""pyscsi-target: a userspace iSCSI target with the FreeNAS v1.0 iSCSI REST API."""

__version__ = "0.1.0"
