"""The configuration the API edits and the target serves: the eight v1.0 iSCSI resources.

Pure data (stdlib only). Field names are the Pythonic short forms of the API's field names
(`Extent.blocksize` is `iscsi_target_extent_blocksize`); api/ owns the mapping. Editors do not
change a `Config` they were given: they take a `draft()` of it (model/draft.py: the change, in
O(change) memory, read through to the configuration it is based on), change the draft, validate it
and hand it to `TargetControl.apply()`, which persists it and makes the live target match it. The
configuration the target serves is `indexed()` (model/indexes.py): lookups by value (a target's
name, a target's LUNs and groups) are O(1) there; an unindexed Config answers them by scanning.

Foreign keys follow FreeNAS (spec Part A §2): TargetGroup.portalgroup and .initiatorgroup are object
ids; TargetGroup.authgroup and Portal.discoveryauthgroup are auth *tags* (several credentials can
share a tag); LunMapping.target/.extent are ids.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .indexes import SPECS, STORAGE, Indexes

if TYPE_CHECKING:
    from .draft import Draft

#: FreeNAS initial-data default base name (spec Part A §2.1).
DEFAULT_BASENAME = "iqn.2005-10.org.freenas.ctl"
#: iSCSI's registered TCP port (RFC 7143 §13.1 / IANA).
DEFAULT_ISCSI_PORT = 3260

AUTH_NONE = "None"
AUTH_CHAP = "CHAP"
AUTH_CHAP_MUTUAL = "CHAP Mutual"
AUTH_METHODS = (AUTH_NONE, AUTH_CHAP, AUTH_CHAP_MUTUAL)

EXTENT_FILE = "File"
EXTENT_DISK = "Disk"
EXTENT_ZVOL = "ZVOL"
EXTENT_HAST = "HAST"

RPM_CHOICES = ("Unknown", "SSD", "5400", "7200", "10000", "15000")
BLOCKSIZE_CHOICES = (512, 1024, 2048, 4096)


@dataclass
class GlobalConfig:
    basename: str = DEFAULT_BASENAME
    isns_servers: str = ""
    pool_avail_threshold: int | None = None
    alua: bool = False


@dataclass
class PortalAddress:
    host: str  # "0.0.0.0", "::", "127.0.0.1", "::1" ... (IPv6 without brackets)
    port: int = DEFAULT_ISCSI_PORT

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class Portal:
    id: int
    tag: int
    ips: list[PortalAddress] = field(default_factory=list)
    comment: str = ""
    discoveryauthmethod: str = AUTH_NONE
    discoveryauthgroup: int | None = None  # an auth tag


@dataclass
class InitiatorGroup:
    """`authorizedinitiator`: which initiator names and networks may log in."""

    id: int
    tag: int
    initiators: str = "ALL"  # names separated by whitespace/commas, or ALL
    auth_network: str = "ALL"  # IPs/CIDRs separated by whitespace, or ALL
    comment: str = ""

    def initiator_names(self) -> list[str] | None:
        """Normalised (lower-cased, RFC 3722) names, or None for ALL."""
        names = [n for n in self.initiators.replace(",", " ").split() if n]
        if not names or any(n.upper() == "ALL" for n in names):
            return None
        return [n.lower() for n in names]

    def networks(self) -> list[str] | None:
        """The CIDR/IP strings, or None for ALL."""
        nets = [n for n in self.auth_network.replace(",", " ").split() if n]
        if not nets or any(n.upper() == "ALL" for n in nets):
            return None
        return nets


@dataclass
class AuthCredential:
    id: int
    tag: int
    user: str
    secret: str
    peeruser: str = ""
    peersecret: str = ""


@dataclass
class Target:
    id: int
    name: str
    alias: str | None = None
    mode: str = "iscsi"


@dataclass
class TargetGroup:
    id: int
    target: int  # Target.id
    portalgroup: int  # Portal.id
    initiatorgroup: int | None = None  # InitiatorGroup.id
    authtype: str = AUTH_NONE
    authgroup: int | None = None  # an auth tag
    initialdigest: str = "Auto"


@dataclass
class Extent:
    id: int
    name: str
    type: str  # EXTENT_FILE / EXTENT_DISK / EXTENT_ZVOL / "RBD" (model/extent_rbd.py)
    path: str  # absolute path of the backing file or device
    filesize: str = "0"  # as the API keeps it: "0" (auto) or bytes / "10MB" (normalised by api/)
    blocksize: int = 512
    pblocksize: bool = False  # True = *disable* physical block size reporting
    avail_threshold: int | None = None
    comment: str = ""
    naa: str = ""  # "0x6589cfc000000" + 19 hex digits
    serial: str = ""
    insecure_tpc: bool = True
    xen: bool = False
    rpm: str = "SSD"
    ro: bool = False
    legacy: bool = False
    enabled: bool = True
    disk: str | None = None  # the API's input-only `iscsi_target_extent_disk`, kept for round trips


@dataclass
class LunMapping:
    id: int
    target: int  # Target.id
    extent: int  # Extent.id
    lunid: int


@dataclass
class ServiceState:
    enabled: bool = True


@dataclass
class Config:
    """The whole configuration. Collections are keyed by object id."""

    global_config: GlobalConfig = field(default_factory=GlobalConfig)
    service: ServiceState = field(default_factory=ServiceState)
    portals: dict[int, Portal] = field(default_factory=dict)
    initiators: dict[int, InitiatorGroup] = field(default_factory=dict)
    auths: dict[int, AuthCredential] = field(default_factory=dict)
    targets: dict[int, Target] = field(default_factory=dict)
    targetgroups: dict[int, TargetGroup] = field(default_factory=dict)
    extents: dict[int, Extent] = field(default_factory=dict)
    mappings: dict[int, LunMapping] = field(default_factory=dict)
    #: next id per collection name (ids are never reused, like SQL autoincrement)
    next_ids: dict[str, int] = field(default_factory=dict)

    COLLECTIONS = ("portals", "initiators", "auths", "targets", "targetgroups", "extents", "mappings")

    #: the secondary indexes of a committed configuration (None: lookups scan)
    indexes: Indexes | None = field(default=None, repr=False, compare=False)

    def copy(self) -> Config:
        """A deep, unindexed copy (a whole-configuration edit: import, the demo)."""
        out = Config(copy.deepcopy(self.global_config), copy.deepcopy(self.service),
                     next_ids=dict(self.next_ids))
        for collection in self.COLLECTIONS:
            setattr(out, collection, {oid: copy.deepcopy(o) for oid, o in getattr(self, collection).items()})
        return out

    def draft(self) -> Draft:
        """An empty change based on this configuration (model/draft.py)."""
        from .draft import Draft

        return Draft(self)

    def indexed(self) -> Config:
        """Build the indexes (O(size), once: at load or for a whole new configuration); returns self.
        Ids are never reused: `next_ids` is raised above every id present."""
        for collection in self.COLLECTIONS:
            items: dict[int, object] = getattr(self, collection)
            floor = max(items, default=0) + 1
            if self.next_ids.get(collection, 1) < floor:
                self.next_ids[collection] = floor
        self.indexes = Indexes.of(self)
        return self

    def find(self, index: str, key: Hashable) -> Iterable[int]:
        """Ids of the objects indexed under `key` in `index` (model/indexes.py SPECS)."""
        if self.indexes is not None:
            if index == STORAGE and self.indexes.unresolved:
                self.indexes.refresh_storage(self)
            return self.indexes.ids(index, key)
        spec = SPECS[index]
        return {o.id for o in getattr(self, spec.collection).values() if key in spec.keys(self, o)}

    def new_id(self, collection: str) -> int:
        items: dict[int, object] = getattr(self, collection)
        nid = self.next_ids.get(collection, 1)
        if self.indexes is None or nid in items:  # unindexed: never below the ids present
            nid = max(nid, max(items, default=0) + 1)
        self.next_ids[collection] = nid + 1
        return nid

    def is_empty(self) -> bool:
        return not any(getattr(self, c) for c in self.COLLECTIONS)

    # ---- derived views used by the target -------------------------------------------------

    def target_iqn(self, target: Target) -> str:
        """RFC 3720 name of a target: verbatim if it is already iqn./eui./naa., else basename:name."""
        name = target.name
        if name.startswith(("iqn.", "eui.", "naa.")):
            return name
        return f"{self.global_config.basename}:{name}"

    def target_by_iqn(self, iqn: str) -> Target | None:
        for tid in sorted(self.find("target_iqn", iqn.lower())):
            return self.targets[tid]
        return None

    def groups_of_target(self, target_id: int) -> list[TargetGroup]:
        return [self.targetgroups[gid] for gid in sorted(self.find("group_target", target_id))]

    def luns_of_target(self, target_id: int) -> dict[int, Extent]:
        """LUN number -> extent, for the enabled extents mapped to that target."""
        out: dict[int, Extent] = {}
        for mid in sorted(self.find("mapping_target", target_id)):
            m = self.mappings[mid]
            ext = self.extents.get(m.extent)
            if ext is not None and ext.enabled:
                out[m.lunid] = ext
        return dict(sorted(out.items()))

    def credentials_with_tag(self, tag: int | None) -> list[AuthCredential]:
        if tag is None:
            return []
        return [self.auths[aid] for aid in sorted(self.find("auth_tag", tag))]

    def portal_tag(self, portal_id: int) -> int:
        p = self.portals.get(portal_id)
        return p.tag if p else 1
