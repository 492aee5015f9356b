"""The composition root: `serve(options)` runs the target and the management API in one trio loop.

```
serve
├── TargetService.run      (portal listeners, connections, extents; see service.py)
└── hypercorn serve        (the v1.0 API, against the same TargetService)
```
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .. import __version__
from ..model import ConfigStore
from .datadir import claimed
from .demo import demo_config, demo_url
from .options import DEFAULT_API_PORT, OptionsError, ServerOptions, is_loopback_host, split_host_port
from .service import TargetService

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig

log = logging.getLogger("pyscsi_target")


def hypercorn_config(options: ServerOptions) -> HypercornConfig:
    """Where and how hypercorn serves the API: one bind, TLS when a certificate is configured
    (hypercorn's context: TLS >= 1.2, ALPN h2/http1.1), no access log (spec Part B §B.1.6)."""
    from hypercorn.config import Config as HypercornConfig

    host, port = split_host_port(options.api, DEFAULT_API_PORT)
    hc = HypercornConfig()
    hc.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    if options.api_tls:
        hc.certfile = str(options.api_cert)
        hc.keyfile = str(options.api_key)
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


async def serve_api(service: TargetService, options: ServerOptions, *,
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the v1.0 API against `service`; `task_status` gets hypercorn's bound URLs."""
    from hypercorn.trio import serve as hypercorn_serve

    from ..api import create_app, load_api_password

    try:
        password, generated = await trio.to_thread.run_sync(
            load_api_password,
            str(options.data_dir),
            str(options.api_password_file) if options.api_password_file else None,
        )
    except ValueError as exc:
        raise OptionsError(str(exc)) from exc
    if generated:
        print(f"API password for user root (saved in {options.data_dir / 'api-password'}): {password}", flush=True)
    app = create_app(
        service,
        password=password,
        extent_roots=[str(p) for p in options.resolved_extent_roots()],
        device_root=str(options.device_root),
        allow_file_devices=options.allow_file_devices,
        version=__version__,
    )
    host, _ = split_host_port(options.api, DEFAULT_API_PORT)
    if not options.api_tls and not is_loopback_host(host):
        log.warning("the API on %s is served WITHOUT TLS (--api-insecure): passwords cross the network in "
                    "clear text", options.api)
    await hypercorn_serve(app, hypercorn_config(options), shutdown_trigger=trio.sleep_forever,  # type: ignore[arg-type]
                          task_status=task_status)


async def serve(options: ServerOptions, *,
                task_status: trio.TaskStatus[TargetService] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the target (and the API unless disabled) until cancelled. Raises `OptionsError` before
    touching anything when the options must not start (ServerOptions.check, an unusable TLS
    certificate or key)."""
    options.check()
    if options.api_enabled:
        await trio.to_thread.run_sync(options.api_ssl_context)  # a bad certificate/key fails here, clearly
    # Issue #10 items 4, 8, 11: lock the data directory before writing anything in it, owner-only
    # modes, descriptor budget raised.
    with claimed(options.data_dir):
        await _serve_claimed(options, task_status=task_status)


async def _serve_claimed(options: ServerOptions, *, task_status: trio.TaskStatus[TargetService]) -> None:
    options.data_dir.mkdir(parents=True, exist_ok=True)
    for root in options.resolved_extent_roots():
        root.mkdir(parents=True, exist_ok=True)
    store = ConfigStore(options.config_db)
    try:
        service = TargetService(store, policy=options.storage_policy())
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            if options.demo and service.config.is_empty():
                cfg = demo_config(service.config, options.demo_portal, options.resolved_extent_roots()[0])
                await service.apply(cfg)
                print(f"demo LUN: {demo_url(service.config)}", flush=True)
            api_binds: list[str] = []
            if options.api_enabled:
                api_binds = await nursery.start(serve_api, service, options)
            portals = ", ".join(f"{h}:{p}" for h, p in service.addresses()) or "none"
            log.info("pyscsi-target %s ready: iSCSI portals %s; API %s", __version__, portals,
                     ", ".join(api_binds) or "disabled")
            task_status.started(service)
    finally:
        store.close()
