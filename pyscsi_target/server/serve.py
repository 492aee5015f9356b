"""The composition root: `serve(options)` runs the target and the management API in one trio loop.

```
serve
├── TargetService.run      (portal listeners, connections, extents; see service.py)
└── hypercorn serve        (the v1.0 API, against the same TargetService)
```
"""

from __future__ import annotations

import logging

import trio

from .. import __version__
from ..model import ConfigStore
from .demo import demo_config, demo_url
from .options import ServerOptions, split_host_port
from .service import TargetService

log = logging.getLogger("pyscsi_target")

async def serve_api(service: TargetService, options: ServerOptions, *,
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.trio import serve as hypercorn_serve

    from ..api import create_app, load_api_password

    password, generated = load_api_password(
        str(options.data_dir), str(options.api_password_file) if options.api_password_file else None
    )
    if generated:
        print(f"API password for user root (saved in {options.data_dir / 'api-password'}): {password}", flush=True)
    app = create_app(
        service,
        password=password,
        extent_roots=[str(p) for p in options.resolved_extent_roots()],
        device_root=str(options.device_root),
        version=__version__,
    )
    host, port = split_host_port(options.api, 8080)
    hc = HypercornConfig()
    hc.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    await hypercorn_serve(app, hc, shutdown_trigger=trio.sleep_forever, task_status=task_status)  # type: ignore[arg-type]


async def serve(options: ServerOptions, *,
                task_status: trio.TaskStatus[TargetService] = trio.TASK_STATUS_IGNORED) -> None:
    options.data_dir.mkdir(parents=True, exist_ok=True)
    for root in options.resolved_extent_roots():
        root.mkdir(parents=True, exist_ok=True)
    store = ConfigStore(options.config_db)
    try:
        service = TargetService(store)
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
