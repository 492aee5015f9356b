"""Every number the iSCSI layer declares, accepts or enforces, with its unit and source.

What we *declare* in negotiation (our side of Min/Max/AND/OR), the RFC 7143 defaults that apply
until a key is negotiated, and the caps that bound what an initiator can make us buffer.
docs/limits.md lists the same values.
"""

from __future__ import annotations

# ---- wire constants (RFC 7143 §11) ------------------------------------------------------------

#: bytes in a Basic Header Segment (RFC 7143 §11.2.1)
BHS_LENGTH = 48
#: bytes of a CRC32C header or data digest (RFC 7143 §11.2.3 / §13.1)
DIGEST_LENGTH = 4
#: data segments and AHSs are padded to this many bytes (RFC 7143 §11.2.3)
PAD_UNIT = 4
#: the reserved tag value "no task / no transfer" (RFC 7143 §11.2.1.4, §11.7.4)
RESERVED_TAG = 0xFFFFFFFF
#: iSCSI version we implement: Version-max = Version-min = 0x00 (RFC 7143 §11.12.4)
ISCSI_VERSION = 0x00
#: 32-bit serial number space of CmdSN/StatSN/DataSN (RFC 7143 §4.2.2.1, RFC 1982)
SERIAL_MODULUS = 1 << 32

# ---- RFC 7143 defaults (§13) ------------------------------------------------------------------

#: bytes; MaxRecvDataSegmentLength default, which applies during login (RFC 7143 §13.12)
DEFAULT_MRDSL = 8192
#: bytes; MaxBurstLength default (RFC 7143 §13.13)
DEFAULT_MAX_BURST_LENGTH = 262144
#: bytes; FirstBurstLength default (RFC 7143 §13.14)
DEFAULT_FIRST_BURST_LENGTH = 65536
#: seconds; DefaultTime2Wait default (RFC 7143 §13.15)
DEFAULT_TIME2WAIT = 2
#: seconds; DefaultTime2Retain default (RFC 7143 §13.16)
DEFAULT_TIME2RETAIN = 20
#: R2Ts; MaxOutstandingR2T default (RFC 7143 §13.17)
DEFAULT_MAX_OUTSTANDING_R2T = 1

# ---- what this target declares / accepts -----------------------------------------------------

#: bytes; our MaxRecvDataSegmentLength, declared at login (RFC 7143 §13.12; open-iscsi and
#: libiscsi both use 262144, so Data-Out and immediate data arrive in one PDU per 256 KiB)
TARGET_MRDSL = 262144
#: bytes; our MaxBurstLength; the negotiated value is Min(initiator, this) (RFC 7143 §13.13).
#: 1 MiB keeps a 1 MiB WRITE to one R2T.
TARGET_MAX_BURST_LENGTH = 1048576
#: bytes; our FirstBurstLength; Min(initiator, this) (RFC 7143 §13.14; RFC default 64 KiB)
TARGET_FIRST_BURST_LENGTH = 65536
#: R2Ts per task we may have outstanding; Min(initiator, this) (RFC 7143 §13.17; SPDK uses 4)
TARGET_MAX_OUTSTANDING_R2T = 4
#: connections per session: we do not implement MC/S (RFC 7143 §13.2)
TARGET_MAX_CONNECTIONS = 1
#: ErrorRecoveryLevel we implement (RFC 7143 §13.20; LIO's TPG default is 0 too)
TARGET_ERROR_RECOVERY_LEVEL = 0
#: iSCSIProtocolLevel: 1 = RFC 7143 without the RFC 7144 extensions (RFC 7144 §2.1)
TARGET_PROTOCOL_LEVEL = 1
#: commands; CmdSN window depth MaxCmdSN - ExpCmdSN + 1 when nothing is outstanding
#: (RFC 7143 §4.2.2.1; LIO default_cmdsn_depth 64, we allow 128 for deeper queues)
COMMAND_WINDOW_DEPTH = 128

# ---- caps on what an initiator can make us hold ------------------------------------------------

#: 4-byte words of AHS accepted in one PDU: the largest Extended CDB AHS (260-byte CDB) is 62
#: words; anything longer closes the connection (target-rules §1.4: SPDK caps at 60 bytes)
MAX_TOTAL_AHS_WORDS = 64
#: bytes of key=value data in one login or text negotiation sequence, C=1 continuations included
#: (RFC 7143 §6.1: at least 8192, and 64 KiB when an authentication method needs long items)
MAX_TEXT_SEQUENCE_BYTES = 65536
#: key=value pairs in one negotiation sequence (target-rules §1.5, CVE-2026-63887: cap the count)
MAX_TEXT_PAIRS = 256
#: characters of a key name (RFC 7143 §6.1 "standard-label ... must not exceed 63 characters")
MAX_KEY_LENGTH = 63
#: bytes of a simple value (RFC 7143 §6.1 "not exceed 255 bytes")
MAX_VALUE_LENGTH = 255
#: bytes of a CHAP_C / CHAP_R value as text: the exemption SPDK makes (non_simple_value_params)
MAX_LONG_VALUE_LENGTH = 8192
#: bytes; binary length cap of CHAP_C and CHAP_R (RFC 7143 §12.1.3, LIO e4fae2318b5d)
MAX_CHAP_BINARY_LENGTH = 1024
#: bytes of the CHAP challenge we send (LIO sends 16 = the MD5 digest size; issue #4 and
#: target-rules §1.1: at least 16 random bytes from `secrets`)
CHAP_CHALLENGE_LENGTH = 16
#: Login Requests accepted on one connection before it logs in: a CHAP login needs 4 and the
#: 64 KiB text cap at 8 KiB per PDU another 8 continuations, so 32 leaves room for any real
#: initiator and stops a ping-pong of empty requests before authentication (our choice)
MAX_LOGIN_PDUS = 32
#: 4-byte words of AHS a Login Request may carry: none (RFC 7143 §11.2.2 defines AHS types only
#: for SCSI Commands; target-rules §5.2: allocate nothing unbounded before authentication)
MAX_LOGIN_AHS_WORDS = 0
#: Data-Out ITTs of recently aborted tasks remembered so their late data is dropped silently
ABORTED_TAGS_REMEMBERED = 256
