"""Shared pieces of the protocol tests: a fake `LoginAuthority` (a fake of an interface, not of
our code), login helpers and key sets taken from real initiators."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyscsi_target.protocol import NEED_DATA, Connection, Event, LoginComplete
from pyscsi_target.protocol.authority import AuthPolicy, ChapSecret, LoginRefused, SendTargetsEntry
from tests.initiator import Initiator, TargetPdu

TARGET = "iqn.2024-01.org.example:disk0"
OTHER_TARGET = "iqn.2024-01.org.example:disk1"
SECRET_TARGET = "iqn.2024-01.org.example:secret"
MUTUAL_TARGET = "iqn.2024-01.org.example:mutual"
DENIED_INITIATOR = "iqn.2024-01.org.example:denied"

CHAP_USER = "alice"
CHAP_SECRET = "alice-secret-16b"
PEER_USER = "target-bob"
PEER_SECRET = "bob-secret-1234x"
CREDENTIALS = (ChapSecret(CHAP_USER, CHAP_SECRET, PEER_USER, PEER_SECRET),)

# open-iscsi 2.1's operational key set (iscsid's default node record)
OPEN_ISCSI_OPERATIONAL = [
    ("HeaderDigest", "None"), ("DataDigest", "None"), ("DefaultTime2Wait", "2"),
    ("DefaultTime2Retain", "0"), ("IFMarker", "No"), ("OFMarker", "No"), ("ErrorRecoveryLevel", "0"),
    ("InitialR2T", "No"), ("ImmediateData", "Yes"), ("MaxBurstLength", "16776192"),
    ("FirstBurstLength", "262144"), ("MaxOutstandingR2T", "1"), ("MaxConnections", "1"),
    ("DataPDUInOrder", "Yes"), ("DataSequenceInOrder", "Yes"), ("MaxRecvDataSegmentLength", "262144"),
]
# libiscsi's operational key set (lib/login.c)
LIBISCSI_OPERATIONAL = [
    ("HeaderDigest", "None,CRC32C"), ("DataDigest", "None"), ("InitialR2T", "No"),
    ("ImmediateData", "Yes"), ("MaxBurstLength", "262144"), ("FirstBurstLength", "262144"),
    ("MaxRecvDataSegmentLength", "262144"), ("DataPDUInOrder", "Yes"), ("DataSequenceInOrder", "Yes"),
    ("DefaultTime2Wait", "2"), ("DefaultTime2Retain", "0"), ("IFMarker", "No"), ("OFMarker", "No"),
    ("ErrorRecoveryLevel", "0"), ("MaxConnections", "1"), ("MaxOutstandingR2T", "1"),
]


@dataclass
class FakeAuthority:
    """Targets TARGET/OTHER_TARGET (no auth), SECRET_TARGET (CHAP), MUTUAL_TARGET (mutual)."""

    discovery: AuthPolicy | LoginRefused = field(default_factory=AuthPolicy)
    next_tsih: int = 0x100
    sessions: list[tuple[str, int, str | None, int]] = field(default_factory=list)
    entries: list[SendTargetsEntry] = field(default_factory=lambda: [
        SendTargetsEntry(TARGET, ("127.0.0.1:3260,1", "[::1]:3260,1")),
        SendTargetsEntry(OTHER_TARGET, ("127.0.0.1:3260,1",)),
    ])
    send_targets_calls: list[tuple[str, str]] = field(default_factory=list)
    #: target name -> alias its policy carries (TargetAlias, RFC 7143 §13.6)
    aliases: dict[str, str] = field(default_factory=dict)

    def discovery_policy(self, initiator_name: str) -> AuthPolicy | LoginRefused:
        return self.discovery

    def target_policy(self, target_name: str, initiator_name: str) -> AuthPolicy | LoginRefused:
        if initiator_name == DENIED_INITIATOR:
            return LoginRefused(2, 2, "not in the ACL")
        if target_name in (TARGET, OTHER_TARGET):
            return AuthPolicy(alias=self.aliases.get(target_name))
        if target_name == SECRET_TARGET:
            return AuthPolicy(method="CHAP", credentials=CREDENTIALS)
        if target_name == MUTUAL_TARGET:
            return AuthPolicy(method="CHAP Mutual", credentials=CREDENTIALS)
        return LoginRefused(2, 3, "no such target")

    def send_targets(self, initiator_name: str, which: str) -> list[SendTargetsEntry]:
        self.send_targets_calls.append((initiator_name, which))
        if which == "All":
            return list(self.entries)
        return [e for e in self.entries if e.target_name == which]

    def new_session(self, initiator_name: str, isid: int, target_name: str | None, tsih: int) -> int | LoginRefused:
        if tsih:
            if any(s[3] == tsih for s in self.sessions):
                return tsih
            return LoginRefused(2, 0x0A, "session does not exist")
        self.next_tsih += 1
        self.sessions.append((initiator_name, isid, target_name, self.next_tsih))
        return self.next_tsih


def drain(conn: Connection) -> list[Event]:
    events: list[Event] = []
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA:
            return events
        assert isinstance(ev, Event)
        events.append(ev)


def exchange(conn: Connection, ini: Initiator, data: bytes) -> tuple[list[Event], list[TargetPdu]]:
    conn.receive_data(data)
    events = drain(conn)
    return events, ini.receive(conn.data_to_send())


def first_keys(target: str = TARGET, ini: Initiator | None = None, **extra: str) -> list[tuple[str, str]]:
    name = ini.name if ini else Initiator().name
    keys = [("InitiatorName", name), ("SessionType", "Normal"), ("TargetName", target)]
    return keys + list(extra.items())


def login(conn: Connection, ini: Initiator, keys: list[tuple[str, str]] | None = None,
          target: str = TARGET) -> LoginComplete:
    """A one-PDU login straight from the operational stage to full feature phase."""
    keys = first_keys(target, ini) + (OPEN_ISCSI_OPERATIONAL if keys is None else keys)
    events, pdus = exchange(conn, ini, ini.login(keys, csg=1, nsg=3))
    assert len(pdus) == 1 and pdus[0].status_class == 0, pdus[0].bhs.hex()
    assert len(events) == 1 and isinstance(events[0], LoginComplete)
    return events[0]


def logged_in(keys: list[tuple[str, str]] | None = None,
              **ini_kw: object) -> tuple[Connection, Initiator, LoginComplete]:
    conn = Connection(FakeAuthority())
    ini = Initiator(**ini_kw)  # type: ignore[arg-type]
    done = login(conn, ini, keys)
    return conn, ini, done
