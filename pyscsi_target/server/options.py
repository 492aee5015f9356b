"""Command-line level settings of one server process, with their defaults (docs/limits.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: default data directory (relative to the working directory), issue #2
DEFAULT_DATA_DIR = "./pyscsi-data"
#: the management API's default bind: loopback only (target-rules.md §5.4, Part B.1.6)
DEFAULT_API_ADDRESS = "127.0.0.1:8080"
#: the demo portal (issue #2)
DEFAULT_DEMO_PORTAL = "127.0.0.1:3260"
#: size of the demo LUN's sparse file, bytes (1 GiB, issue #2)
DEMO_EXTENT_BYTES = 1 << 30
#: block devices and zvols are looked up under this root (spec Part B.6)
DEFAULT_DEVICE_ROOT = "/dev"


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """'host:port', '[v6]:port', 'host' -> (host, port). Raises ValueError on nonsense."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    else:
        host, port = text, default_port
    if not host or not 0 < port < 65536:
        raise ValueError(f"not a host:port: {text!r}")
    return host, port


@dataclass
class ServerOptions:
    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR))
    api: str = DEFAULT_API_ADDRESS
    api_password_file: Path | None = None
    extent_roots: list[Path] = field(default_factory=list)
    device_root: Path = field(default_factory=lambda: Path(DEFAULT_DEVICE_ROOT))
    demo: bool = False
    demo_portal: str = DEFAULT_DEMO_PORTAL
    log_level: str = "INFO"
    #: disable the management API entirely (tests of the target alone)
    api_enabled: bool = True

    def resolved_extent_roots(self) -> list[Path]:
        roots = self.extent_roots or [self.data_dir / "extents"]
        return [Path(r).resolve() for r in roots]

    @property
    def config_db(self) -> Path:
        return self.data_dir / "config.db"
