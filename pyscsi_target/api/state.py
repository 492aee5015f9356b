"""Per-application state of the API: the control seam, host facts, the write lock and memories.

One `ApiState` lives in `app.extensions["pyscsi_target"]`. Writes are serialised by `lock` so
that read-copy-validate-apply sequences never interleave (spec Part B §B.2.2). `cascaded`
remembers objects that a cascade removed, so that deleting them again a moment later answers
204 rather than 404 (spec Part B §B.2.3: the Proxmox plugin deletes in either order).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from prometheus_client.registry import CollectorRegistry
from quart import Response, current_app, request

from ..model.config import Config
from ..model.control import ApplyError, ConfigError, TargetControl
from ..model.validation import ValidationContext
from .audit import basic_user, config_changes, log_config_change
from .auth import AuthGuard
from .http import conflict
from .listing import RowCache

#: How long an id removed by a cascade still answers DELETE with 204, in seconds (our choice:
#: long enough for a client's follow-up delete, short enough not to hide real mistakes).
CASCADE_MEMORY_SECONDS = 600.0
#: How many such ids are remembered at most (bounded memory).
CASCADE_MEMORY_MAX = 4096
EXTENSION = "pyscsi_target"


class CascadeMemory:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._removed: OrderedDict[tuple[str, int], float] = OrderedDict()

    def remember(self, removed: dict[str, list[int]]) -> None:
        now = self.clock()
        for collection, ids in removed.items():
            for oid in ids:
                self._removed[(collection, oid)] = now
        while len(self._removed) > CASCADE_MEMORY_MAX:
            self._removed.popitem(last=False)

    def recent(self, collection: str, oid: int) -> bool:
        when = self._removed.get((collection, oid))
        return when is not None and self.clock() - when < CASCADE_MEMORY_SECONDS


@dataclass
class ApiState:
    control: TargetControl
    context: ValidationContext
    guard: AuthGuard
    version: str
    lock: trio.Lock = field(default_factory=trio.Lock)
    cascaded: CascadeMemory = field(default_factory=CascadeMemory)
    #: `GET /metrics` without credentials (--metrics-public)
    metrics_public: bool = False
    #: API requests answered, by HTTP status (process statistics, issue #13 item 1)
    api_requests: dict[int, int] = field(default_factory=dict)
    #: the registry `GET /metrics` renders (api/metrics.py), set by create_app
    metrics: CollectorRegistry | None = None
    #: serialised rows per resource name (api/listing.py RowCache)
    rows: dict[str, RowCache] = field(default_factory=dict)

    async def commit(self, new: Config) -> Response | None:
        """Apply `new`; a refusal from the live target (`ApplyError`, named in model terms and
        mapped to the wire field by api/refusals.py, or a `ConfigError`) is the client's 409
        naming the field, and nothing was committed (Part B §B.2.2). An applied change is
        audited (api/audit.py): who, from where, every changed object field by field. The
        changes are worked out before the apply: a draft of the served configuration is folded
        into it in place when applied (model/draft.py), after which there is no "before"."""
        changes = config_changes(self.control.snapshot(), new)
        try:
            await self.control.apply(new)
        except ApplyError as exc:
            from .refusals import refusal_errors  # the field tables need this module first

            return conflict(refusal_errors(exc))
        except ConfigError as exc:
            return conflict(exc.errors)
        log_config_change(requester(), request.remote_addr or "unknown", changes)
        return None


def requester() -> str:
    """The Basic user of the request being served (authenticated: app.py `_authenticate`)."""
    return basic_user(request.headers.get("Authorization")) or "(anonymous)"


def api_state() -> ApiState:
    state: ApiState = current_app.extensions[EXTENSION]
    return state
