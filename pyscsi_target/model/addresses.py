"""Network address syntax in the configuration: portal listen addresses, iSNS servers, ACL networks.

Stdlib only (`ipaddress`). Each parser returns the normalised value or raises `AddressError`
carrying the API field that is wrong and the message the client sees (spec Part A §3.1 and
Part B §B.2.10). Whether an address belongs to this host is decided by the server when it binds.
"""

from __future__ import annotations

import ipaddress
import re

from .config import DEFAULT_ISCSI_PORT, PortalAddress

#: TCP ports are 16-bit; 0 is not a listenable port (RFC 9293 §3.1).
PORT_MIN = 1
PORT_MAX = 65535

F_PORTAL_IPS = "iscsi_target_portal_ips"
#: FreeNAS reported bad addresses and ports under the keys of its child form (spec Part A §1.5).
F_PORTAL_IP = "iscsi_target_portalip_ip"
F_PORTAL_PORT = "iscsi_target_portalip_port"

ALL = "ALL"

_BRACKETED = re.compile(r"^\[(?P<host>[^\]]*)\](?::(?P<port>.*))?$")


class AddressError(ValueError):
    """One address is wrong: `field` is the API key to report it under."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def choice_message(value: object) -> str:
    """Django's message for a value outside a field's choices (spec Part A §3.1)."""
    return f"Select a valid choice. {value} is not one of the available choices."


def _port(text: str, field: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text.strip()):
        raise AddressError(field, "Enter a whole number.")
    port = int(text)
    if port < PORT_MIN:
        raise AddressError(field, f"Ensure this value is greater than or equal to {PORT_MIN}.")
    if port > PORT_MAX:
        raise AddressError(field, f"Ensure this value is less than or equal to {PORT_MAX}.")
    return port


def _ip(text: str, field: str, *, version: int | None = None) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise AddressError(field, choice_message(text)) from None
    if version is not None and addr.version != version:
        raise AddressError(field, choice_message(text))
    return str(addr)


def parse_portal_address(entry: str) -> PortalAddress:
    """`IPv4:port` or `[IPv6]:port` -> PortalAddress (host without brackets, normalised).

    The port is mandatory (spec Part B §B.1.2: a missing `:port` is a 409 on the IPs field,
    never the 500 FreeNAS gave). A bare IPv6 address is ambiguous with a port and is refused.
    """
    entry = entry.strip()
    missing_port = f'"{entry}" has no port: write IP:PORT, for example 0.0.0.0:{DEFAULT_ISCSI_PORT}.'
    match = _BRACKETED.match(entry)
    if match:
        if match.group("port") is None:
            raise AddressError(F_PORTAL_IPS, missing_port)
        host = _ip(match.group("host"), F_PORTAL_IP, version=6)
        return PortalAddress(host, _port(match.group("port"), F_PORTAL_PORT))
    if entry.count(":") > 1:
        raise AddressError(F_PORTAL_IPS, f'"{entry}": write IPv6 addresses in brackets, as [addr]:port.')
    if ":" not in entry:
        raise AddressError(F_PORTAL_IPS, missing_port)
    host_text, port_text = entry.rsplit(":", 1)
    return PortalAddress(_ip(host_text, F_PORTAL_IP, version=4), _port(port_text, F_PORTAL_PORT))


def _isns_server(token: str) -> bool:
    """True for `IPv4[:port]`, `[IPv6][:port]` or a bare IPv6 address."""
    field = "iscsi_isns_servers"
    try:
        match = _BRACKETED.match(token)
        if match:
            _ip(match.group("host"), field, version=6)
            if match.group("port") is not None:
                _port(match.group("port"), field)
            return True
        if token.count(":") > 1:
            _ip(token, field, version=6)
            return True
        host, sep, port = token.partition(":")
        _ip(host, field, version=4)
        if sep:
            _port(port, field)
        return True
    except AddressError:
        return False


def normalise_isns_servers(text: str) -> str:
    """Whitespace-separated iSNS servers, stored joined by single spaces (spec Part A §2.1)."""
    tokens = text.replace(",", " ").split()
    bad = [t for t in tokens if not _isns_server(t)]
    if bad:
        raise AddressError("iscsi_isns_servers", f"The following addresses are not valid: {', '.join(bad)}")
    return " ".join(tokens)


def split_tokens(text: str) -> list[str]:
    """Entries separated by whitespace, newlines or commas (spec Part A §4.3, auth groups)."""
    return [t for t in text.replace(",", " ").split() if t]


def normalise_networks(text: str) -> str:
    """`ALL` or IP addresses / CIDR networks, stored one per line; empty means ALL (spec Part A §2.3)."""
    out: list[str] = []
    for token in split_tokens(text):
        if token.upper() == ALL:
            out.append(ALL)
            continue
        try:
            ipaddress.ip_network(token, strict=False)
        except ValueError:
            raise AddressError(
                "iscsi_target_initiator_auth_network",
                'The field is a not a valid IP address or network. The keyword "ALL" can be used to'
                " allow everything.",
            ) from None
        out.append(token)
    return "\n".join(out) or ALL


#: Bits of an IPv6 address that name one client: the /64 one host is usually given (RFC 4291
#: §2.5.4 interface identifiers are 64 bits; RFC 7421). The API's password guard and the iSCSI
#: login admission both count per client, so a host cannot step through its /64 to escape them.
IPV6_CLIENT_PREFIX_LENGTH = 64


def client_key(address: str) -> str:
    """What per-client limits count: an IPv4 address (also when IPv4-mapped), or an IPv6
    address's /64; anything that is not an address counts as itself."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX_LENGTH), strict=False))
    return str(ip)
