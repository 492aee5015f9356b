"""Command-line level settings of one server process, with their defaults (docs/limits.md), and
the start-up checks on them (`ServerOptions.check`): the log level, the API and demo portal
addresses, the directories named on the command line, whether the API may be served where it is
asked to be, and whether its TLS certificate and key can be used. Every refusal is an
`OptionsError` whose message names the flag and says what to change (issue #13 item 6): the
command line prints it as one line, never a traceback.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from ..model.config import DEFAULT_ISCSI_PORT
from ..model.extents import StoragePolicy

#: default data directory (relative to the working directory), issue #2
DEFAULT_DATA_DIR = "./pyscsi-data"
#: port of `--api` when only a host is given (FreeNAS's and hypercorn's usual HTTP port)
DEFAULT_API_PORT = 8080
#: the management API's default bind: loopback only (target-rules.md §5.4, Part B.1.6)
DEFAULT_API_ADDRESS = f"127.0.0.1:{DEFAULT_API_PORT}"
#: the demo portal (issue #2)
DEFAULT_DEMO_PORTAL = "127.0.0.1:3260"
#: size of the demo LUN's sparse file, bytes (1 GiB, issue #2)
DEMO_EXTENT_BYTES = 1 << 30
#: block devices and zvols are looked up under this root (spec Part B.6)
DEFAULT_DEVICE_ROOT = "/dev"
#: default `--log-level`
DEFAULT_LOG_LEVEL = "INFO"
#: the values `--log-level` accepts (the `logging` module's level names)
LOG_LEVEL_NAMES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class OptionsError(ValueError):
    """Settings this server refuses to start with; the message says what to change."""


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback address literals (127.0.0.0/8, ::1, ::ffff:127.x).

    Any other host name counts as not loopback: we do not resolve names at start-up, so a name
    that might reach the network is treated as if it did (target-rules.md §5.4)."""
    if host.lower() == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """'host:port', '[v6]:port', 'host' -> (host, port). Raises ValueError, saying what is wrong
    in words an operator can act on, on anything else."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, None
    if not host:
        raise ValueError(f"{text!r} has no host; write HOST:PORT, e.g. 127.0.0.1:{default_port}")
    if port_text is None:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a number from 1 to 65535; write HOST:PORT, "
                         f"e.g. {host}:{default_port}")
    return host, int(port_text)


@dataclass
class ServerOptions:
    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR))
    api: str = DEFAULT_API_ADDRESS
    api_password_file: Path | None = None
    extent_roots: list[Path] = field(default_factory=list)
    device_root: Path = field(default_factory=lambda: Path(DEFAULT_DEVICE_ROOT))
    #: regular files under the device root may back Disk/ZVOL extents (issue #10 item 1: off by
    #: default, block devices only)
    allow_file_devices: bool = False
    #: RBD extents (issue #15): --ceph-conf, --ceph-id (None: librados's defaults)
    ceph_conf: str | None = None
    ceph_id: str | None = None
    demo: bool = False
    demo_portal: str = DEFAULT_DEMO_PORTAL
    log_level: str = DEFAULT_LOG_LEVEL
    #: disable the management API entirely (tests of the target alone)
    api_enabled: bool = True
    #: PEM certificate (chain) and private key: serve the API over TLS (spec Part B §B.1.6)
    api_cert: Path | None = None
    api_key: Path | None = None
    #: allow the API on a non-loopback address without TLS (Basic credentials in clear text)
    api_insecure: bool = False
    #: `GET /metrics` without the API's credentials (issue #13 item 2; default: the API's auth)
    metrics_public: bool = False
    #: log lines as text or as JSON objects (server/logging_setup.py)
    log_format: str = "text"

    @property
    def api_tls(self) -> bool:
        return self.api_cert is not None and self.api_key is not None

    def check(self) -> None:
        """Refuse settings that must not start (raises `OptionsError`), before anything is written
        (issue #13 item 6): see `check_log_level`, `check_demo_portal`, `check_paths`, `check_api`."""
        self.check_log_level()
        self.check_demo_portal()
        self.check_paths()
        self.check_api()

    def check_log_level(self) -> None:
        if self.log_level.upper() not in LOG_LEVEL_NAMES:
            raise OptionsError(f"--log-level {self.log_level}: not a log level; use one of "
                               f"{', '.join(LOG_LEVEL_NAMES)}")

    def check_demo_portal(self) -> None:
        if not self.demo:
            return
        try:
            split_host_port(self.demo_portal, DEFAULT_ISCSI_PORT)
        except ValueError as exc:
            raise OptionsError(f"--demo-portal {self.demo_portal}: {exc}") from exc

    def check_paths(self) -> None:
        """Directories named on the command line must exist: a mistyped `--extent-root` would
        otherwise be created, and the demo's 1 GiB file with it, somewhere nobody meant. Only the
        default extent root (DATA_DIR/extents) is created by the server. `--device-root` is only
        read, so it must exist too."""
        for root in self.extent_roots:
            if not Path(root).is_dir():
                what = "is not a directory" if Path(root).exists() else "does not exist"
                raise OptionsError(f"--extent-root {root}: {what}; create it first (mkdir -p {root}) "
                                   "or fix the path")
        if not Path(self.device_root).is_dir():
            raise OptionsError(f"--device-root {self.device_root}: not an existing directory; fix the path "
                               f"(default {DEFAULT_DEVICE_ROOT})")
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise OptionsError(f"--data-dir {self.data_dir}: exists and is not a directory; fix the path")

    def check_api(self) -> None:
        """A bad API address, a certificate without its key or the reverse, and a non-loopback API
        address without TLS unless `api_insecure` (RFC 7617 §1: Basic sends the password in clear
        text; target-rules.md §5.4: refuse Basic over plain TCP on non-loopback interfaces)."""
        if not self.api_enabled:
            return
        try:
            host, _ = split_host_port(self.api, DEFAULT_API_PORT)
        except ValueError as exc:
            raise OptionsError(f"--api {self.api}: {exc}") from exc
        if (self.api_cert is None) != (self.api_key is None):
            raise OptionsError("--api-cert and --api-key go together: give both to serve the API over TLS")
        if not self.api_tls and not self.api_insecure and not is_loopback_host(host):
            raise OptionsError(
                f"refusing to serve the API on {self.api} without TLS: HTTP Basic would send the root "
                "password in clear text. Give --api-cert and --api-key, bind --api to a loopback address, "
                "or pass --api-insecure to accept the risk."
            )

    def api_ssl_context(self) -> ssl.SSLContext | None:
        """Load the certificate and key once at start-up, so that a bad pair is reported clearly
        before anything listens (blocking file reads). None without TLS."""
        if not self.api_tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(self.api_cert), str(self.api_key))
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise OptionsError(
                f"--api-cert {self.api_cert} / --api-key {self.api_key}: cannot use them: {reason}"
            ) from exc
        return context

    def resolved_extent_roots(self) -> list[Path]:
        roots = self.extent_roots or [self.data_dir / "extents"]
        return [Path(r).resolve() for r in roots]

    def storage_policy(self) -> StoragePolicy:
        """Where extents may live, for the API's checks and the server's opens alike."""
        return StoragePolicy(tuple(str(p) for p in self.resolved_extent_roots()), str(self.device_root.absolute()),
                             self.allow_file_devices, self.ceph_conf, self.ceph_id)

    @property
    def config_db(self) -> Path:
        return self.data_dir / "config.db"
