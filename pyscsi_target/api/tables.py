"""The field tables of every v1.0 object: keys, types, defaults, choices and limits.

Keys, defaults and choices are FreeNAS 11.x's (spec Part A §2, `iscsi-resources.rst`); lengths are
its database columns. Where this project departs (extent path length, LUN range, 12-16 character
secrets) the constant says so. These tables drive parsing, responses and the OpenAPI document.
"""

from __future__ import annotations

from ..model.config import AUTH_METHODS, AUTH_NONE, BLOCKSIZE_CHOICES, RPM_CHOICES
from ..model.edits import LUN_MAX, LUN_MIN
from ..model.kinds import api_types
from ..model.stats import IoSnapshot
from ..model.validation import MSG_CHOICE_FK
from .fields import BOOLEAN, INTEGER, OBJECT, REQUIRED, STRING, STRING_LIST, Field
from .state import api_state

#: FreeNAS CharField(max_length=120) columns (spec Part A §2).
NAME_MAX = 120
#: FreeNAS TextField(max_length=2048) columns: initiator names and networks (spec Part A §2.3).
TEXT_MAX = 2048
#: Extent paths: FreeNAS's column was 120 characters; we allow longer paths (Linux PATH_MAX is 4096).
PATH_MAX = 1023
#: Extent serial: at most 16 characters (spec Part A §2.2).
SERIAL_MAX = 16
#: Size strings such as "10485760" or "10 GB".
FILESIZE_MAX = 32
#: Auth tags are group numbers; keep them in the 16-bit range of the portal group tags.
TAG_MIN = 1
TAG_MAX = 65535
#: Threshold percentages (spec Part A §2.1/§2.2).
PERCENT_MIN = 1
PERCENT_MAX = 99
#: Extent type on input: File, Disk or RBD (issue #15); ZVOL (what GET returns for a zvol) is read as Disk. Every
#: kind's type names, from the table of kinds (model/kinds.py).
EXTENT_TYPES = api_types()
TARGET_MODES = ("iscsi", "fc", "both")
#: "No auth group" as FreeNAS's forms sent it (spec Part A §2.6/§2.8).
NO_AUTH_GROUP = -1


def _id(description: str) -> Field:
    return Field("id", INTEGER, description, attr="id", read_only=True)


def _fk(name: str, description: str, attr: str, *, nullable: bool = False) -> Field:
    return Field(
        name, INTEGER, description, attr=attr, default=None if nullable else REQUIRED,
        nullable=nullable, type_message=MSG_CHOICE_FK,
    )


EXTENT = (
    _id("Extent id."),
    Field("iscsi_target_extent_name", STRING, "Unique name of the extent; no double quotes.",
          attr="name", max_length=NAME_MAX),
    Field("iscsi_target_extent_type", STRING,
          "File, Disk or RBD on input (ZVOL is read as Disk); File, Disk, ZVOL or RBD on output.",
          attr="type", choices=EXTENT_TYPES),
    Field("iscsi_target_extent_disk", STRING,
          "Disk extents: the device under the device root, e.g. zvol/tank/vol1. Input only.",
          attr="disk", default=None, nullable=True, write_only=True, max_length=PATH_MAX),
    Field("iscsi_target_extent_path", STRING,
          "File extents: absolute path inside an extent root. Disk/ZVOL: the device path (output). "
          "RBD: the image as pool/image, on the cluster of --ceph-conf/--ceph-id.",
          attr="path", default="", max_length=PATH_MAX),
    Field("iscsi_target_extent_filesize", STRING,
          'Size: "0" = the existing file\'s size, bytes, or a number with B/KB/MB/GB/TB/PB (1024-based).'
          " Returned in bytes; always \"0\" for Disk/ZVOL.",
          attr="filesize", default="0", max_length=FILESIZE_MAX),
    Field("iscsi_target_extent_blocksize", INTEGER, "Logical block size in bytes.",
          attr="blocksize", default=512, choices=BLOCKSIZE_CHOICES),
    Field("iscsi_target_extent_pblocksize", BOOLEAN, "Disable physical block size reporting.",
          attr="pblocksize", default=False),
    Field("iscsi_target_extent_avail_threshold", INTEGER, "Remaining capacity warning threshold (%).",
          attr="avail_threshold", default=None, nullable=True, minimum=PERCENT_MIN, maximum=PERCENT_MAX),
    Field("iscsi_target_extent_comment", STRING, "User description.",
          attr="comment", default="", max_length=NAME_MAX),
    Field("iscsi_target_extent_naa", STRING, "NAA identifier the LUN reports (VPD 0x83); generated.",
          attr="naa", read_only=True),
    Field("iscsi_target_extent_serial", STRING, "Serial number the LUN reports (VPD 0x80); empty = generate.",
          attr="serial", default="", max_length=SERIAL_MAX),
    Field("iscsi_target_extent_insecure_tpc", BOOLEAN, "Allow third-party copy (XCOPY) without checks.",
          attr="insecure_tpc", default=True),
    Field("iscsi_target_extent_xen", BOOLEAN, "Xen initiator compatibility mode.", attr="xen", default=False),
    Field("iscsi_target_extent_rpm", STRING, "Reported rotation rate (VPD 0xB1).",
          attr="rpm", default="SSD", choices=RPM_CHOICES),
    Field("iscsi_target_extent_ro", BOOLEAN, "Read-only extent.", attr="ro", default=False),
    Field("iscsi_target_extent_legacy", BOOLEAN, "Report the legacy vendor string.",
          attr="legacy", default=False),
    Field("iscsi_target_extent_enabled", BOOLEAN, "A disabled extent is not offered as a LUN.",
          attr="enabled", default=True),
    Field("iscsi_target_extent_state", STRING,
          "Null while the extent is served (or disabled); otherwise why its LUN answers NOT READY.",
          read_only=True, nullable=True, runtime=True,
          output=lambda e: api_state().control.extent_problems().get(e.id)),
)

INITIATOR = (
    _id("Authorized initiator id."),
    Field("iscsi_target_initiator_tag", INTEGER, "Group number, assigned 1..n.", attr="tag", read_only=True),
    Field("iscsi_target_initiator_initiators", STRING,
          "Initiator names (iqn./eui./naa.) separated by spaces, commas or newlines, or ALL.",
          attr="initiators", default="ALL", max_length=TEXT_MAX),
    Field("iscsi_target_initiator_auth_network", STRING,
          "IP addresses or CIDR networks separated by spaces, commas or newlines, or ALL.",
          attr="auth_network", default="ALL", max_length=TEXT_MAX),
    Field("iscsi_target_initiator_comment", STRING, "User description.",
          attr="comment", default="", max_length=NAME_MAX),
)

AUTH = (
    _id("Auth credential id."),
    Field("iscsi_target_auth_tag", INTEGER, "Auth group number; several credentials may share it.",
          attr="tag", default=1, minimum=TAG_MIN, maximum=TAG_MAX),
    Field("iscsi_target_auth_user", STRING, "CHAP user name (target side).",
          attr="user", max_length=NAME_MAX),
    Field("iscsi_target_auth_secret", STRING, "CHAP secret, 12 to 16 characters.",
          attr="secret", max_length=NAME_MAX, strip=False),
    Field("iscsi_target_auth_peeruser", STRING, "Mutual CHAP user name (initiator side).",
          attr="peeruser", default="", max_length=NAME_MAX),
    Field("iscsi_target_auth_peersecret", STRING, "Mutual CHAP secret, 12 to 16 characters, not the secret.",
          attr="peersecret", default="", max_length=NAME_MAX, strip=False),
)

TARGET = (
    _id("Target id."),
    Field("iscsi_target_name", STRING,
          'Lower-cased; letters, digits, ".", "-", ":". The IQN is <basename>:<name> unless it starts'
          " with iqn., eui. or naa.", attr="name", max_length=NAME_MAX),
    Field("iscsi_target_alias", STRING, "Optional unique alias; not \"target\".",
          attr="alias", default=None, nullable=True, max_length=NAME_MAX),
    Field("iscsi_target_mode", STRING, "iscsi (fc and both need Fibre Channel).",
          attr="mode", default="iscsi", choices=TARGET_MODES),
)

TARGETGROUP = (
    _id("Target group id."),
    _fk("iscsi_target", "Id of the target.", "target"),
    _fk("iscsi_target_portalgroup", "Id of the portal (not its tag).", "portalgroup"),
    _fk("iscsi_target_initiatorgroup", "Id of the authorized initiator, or null for everyone.",
        "initiatorgroup", nullable=True),
    Field("iscsi_target_authtype", STRING, "Authentication method.",
          attr="authtype", default=AUTH_NONE, choices=AUTH_METHODS),
    Field("iscsi_target_authgroup", INTEGER, "Auth group number (a credential tag); null or -1 for none.",
          attr="authgroup", default=None, nullable=True, minimum=NO_AUTH_GROUP, output_nullable=True),
    Field("iscsi_target_initialdigest", STRING, "Stored as sent (FreeNAS compatibility).",
          attr="initialdigest", default="Auto", max_length=NAME_MAX),
)

MAPPING = (
    _id("Target-to-extent id."),
    _fk("iscsi_target", "Id of the target.", "target"),
    _fk("iscsi_extent", "Id of the extent.", "extent"),
    Field("iscsi_lunid", INTEGER, "LUN number; null or absent picks the lowest free one.",
          default=None, nullable=True, minimum=LUN_MIN, maximum=LUN_MAX, output_nullable=False,
          type_message="LUN ID must be a positive integer",
          range_message=f"LUN ID must be a positive integer and lower than {LUN_MAX + 1}",
          output=lambda m: m.lunid, shows="lunid"),
)

PORTAL = (
    _id("Portal id."),
    Field("iscsi_target_portal_tag", INTEGER, "Portal group tag, assigned 1..n.", attr="tag", read_only=True),
    Field("iscsi_target_portal_comment", STRING, "User description.",
          attr="comment", default="", max_length=NAME_MAX),
    Field("iscsi_target_portal_discoveryauthmethod", STRING, "Authentication for discovery sessions.",
          attr="discoveryauthmethod", default=AUTH_NONE, choices=AUTH_METHODS),
    Field("iscsi_target_portal_discoveryauthgroup", INTEGER, "Auth group number for discovery; null or -1.",
          attr="discoveryauthgroup", default=None, nullable=True, minimum=NO_AUTH_GROUP),
    Field("iscsi_target_portal_ips", STRING_LIST, "Listen addresses: IPv4:port or [IPv6]:port.",
          output=lambda p: [str(a) for a in p.ips], shows="ips"),
)

GLOBAL = (
    Field("id", INTEGER, "Always 1.", read_only=True, output=lambda _g: 1),
    Field("iscsi_basename", STRING, "Base name of target IQNs.",
          attr="basename", max_length=NAME_MAX),
    Field("iscsi_isns_servers", STRING, "iSNS servers: IPv4[:port] or [IPv6][:port], space separated.",
          attr="isns_servers", default="", max_length=TEXT_MAX),
    Field("iscsi_pool_avail_threshold", INTEGER, "Pool capacity warning threshold (%).",
          attr="pool_avail_threshold", default=None, nullable=True, minimum=PERCENT_MIN, maximum=PERCENT_MAX),
    Field("iscsi_alua", BOOLEAN, "ALUA (kept for compatibility).", attr="alua", default=False),
)

SERVICE = (
    Field("srv_service", STRING, "Always iscsitarget.", read_only=True, output=lambda _s: "iscsitarget"),
    Field("srv_enable", BOOLEAN, "Whether the target serves its portals.", attr="enabled", default=True),
    Field("srv_state", STRING, "RUNNING or STOPPED.", read_only=True, choices=("RUNNING", "STOPPED"),
          output=lambda s: "RUNNING" if s.enabled else "STOPPED"),
)

SESSION = (
    *(Field(name, kind, description, attr=name, read_only=True)
        for name, kind, description in (
            ("initiator", STRING, "Initiator name."),
            ("initiator_addr", STRING, "Initiator address and port."),
            ("target", STRING, "Target IQN (empty for discovery sessions)."),
            ("target_portal", STRING, "Portal address the session came in through."),
            ("isid", STRING, "Initiator session id (hex)."),
            ("tsih", INTEGER, "Target session identifying handle."),
            ("session_type", STRING, "Normal or Discovery."),
            ("connections", INTEGER, "Number of connections."),
            ("parameters", OBJECT, "Negotiated operational parameters."),
            ("commands", INTEGER, "SCSI commands executed."),
            ("read_bytes", INTEGER, "Bytes read by the initiator."),
            ("written_bytes", INTEGER, "Bytes written by the initiator."),
        )),
    Field("target_alias", STRING, "TargetAlias sent at login (the target's alias then), or null.",
          attr="target_alias", read_only=True, nullable=True),
    # issue #13 item 3: the session's id for DELETE, how it logged in, and its counters
    Field("id", INTEGER, "The session's id (its TSIH): DELETE .../sessions/<id>/ ends it.", attr="id",
          read_only=True),
    Field("auth_method", STRING, "How the initiator authenticated: None, CHAP or CHAP Mutual.",
          attr="auth_method", read_only=True),
    Field("header_digest", STRING, "Negotiated HeaderDigest (None or CRC32C).", attr="header_digest",
          read_only=True),
    Field("data_digest", STRING, "Negotiated DataDigest (None or CRC32C).", attr="data_digest", read_only=True),
    *(Field(name, INTEGER, description, read_only=True, output=output)
      for name, description, output in (
          ("read_commands", "READ commands answered.", lambda s: s.io.read_commands),
          ("write_commands", "WRITE commands answered.", lambda s: s.io.write_commands),
          ("other_commands", "Other SCSI commands answered.", lambda s: s.io.other_commands),
          ("pdus_received", "PDUs received.", lambda s: s.transport.pdus_received),
          ("pdus_sent", "PDUs sent.", lambda s: s.transport.pdus_sent),
          ("digest_errors", "PDUs received with a wrong header or data digest.",
           lambda s: s.transport.digest_errors),
          ("r2ts", "R2Ts sent.", lambda s: s.transport.r2ts),
      )),
    Field("errors", OBJECT, "CHECK CONDITION answers by sense key name.", read_only=True,
          output=lambda s: dict(s.io.errors)),
    Field("latency", OBJECT, "Command latency: count, sum_seconds, and per-bucket counts keyed by the "
          "bucket's upper bound in microseconds (\"inf\" for the last).", read_only=True,
          output=lambda s: latency_object(s.io)),
)


def latency_object(io: IoSnapshot) -> dict[str, object]:
    """The session list's view of a latency histogram (non-empty buckets only)."""
    last = len(io.latency_buckets) - 1
    buckets = {("inf" if i == last else str(1 << i)): n for i, n in enumerate(io.latency_buckets) if n}
    return {"count": sum(io.latency_buckets), "sum_seconds": io.latency_seconds, "buckets": buckets}

VERSION = tuple(
    Field(name, STRING, description, read_only=True)
    for name, description in (
        ("fullversion", "pyscsi-target-<version>."),
        ("name", "pyscsi-target."),
        ("version", "The version."),
    )
)
