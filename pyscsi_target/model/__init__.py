"""Configuration model (stdlib only): the eight API resources, their store and the API seam."""

from .config import (
    AuthCredential,
    Config,
    Extent,
    GlobalConfig,
    InitiatorGroup,
    LunMapping,
    Portal,
    PortalAddress,
    ServiceState,
    Target,
    TargetGroup,
)
from .control import ApplyError, ConfigError, SessionInfo, SessionType, TargetControl
from .draft import Draft, as_change, committed
from .store import ConfigStore, StoreError

__all__ = [
    "ApplyError",
    "AuthCredential",
    "Config",
    "ConfigError",
    "ConfigStore",
    "Draft",
    "Extent",
    "GlobalConfig",
    "InitiatorGroup",
    "LunMapping",
    "Portal",
    "PortalAddress",
    "ServiceState",
    "SessionInfo",
    "SessionType",
    "StoreError",
    "Target",
    "TargetControl",
    "TargetGroup",
    "as_change",
    "committed",
]
