"""The composition root: `serve(options)` runs the target and the management API in one trio loop.

```
serve
├── TargetService.run      (portal listeners, connections, extents; see service.py)
└── hypercorn serve        (the v1.0 API, against the same TargetService)
```

Start-up order (issue #13 items 6 and 7): options checked, the API socket bound and the demo portal
probed BEFORE the data directory is touched, so a busy port is one line naming the flag and
nothing is written; then the data directory is claimed; once the portals and the API listen,
systemd is told READY=1 (sd_notify), and STOPPING=1 when shutdown begins.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from typing import TYPE_CHECKING

import trio

from .. import __version__
from ..model import ConfigStore
from ..model.config import DEFAULT_ISCSI_PORT
from .datadir import claimed
from .demo import demo_config, demo_url
from .options import DEFAULT_API_PORT, OptionsError, ServerOptions, is_loopback_host, split_host_port
from .sdnotify import sd_notify
from .service import TargetService

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.config import Sockets

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


def _refused_bind(flag: str, address: str, exc: OSError) -> OptionsError:
    reason = {errno.EADDRINUSE: "the address is already in use (another server on it?)",
              errno.EADDRNOTAVAIL: "the address does not belong to this host",
              errno.EACCES: "permission denied (ports below 1024 need privileges)"}.get(
        exc.errno or 0, exc.strerror or str(exc))
    return OptionsError(f"{flag} {address}: cannot listen: {reason}; choose another {flag}")


def bind_api(options: ServerOptions) -> tuple[HypercornConfig, Sockets]:
    """Bind (and listen on) the API socket with hypercorn's own socket code, before anything is
    written: a busy port is refused naming `--api` (issue #13 item 6). `serve_api` hands it over."""
    hc = hypercorn_config(options)
    try:
        sockets = hc.create_sockets()
    except OSError as exc:
        raise _refused_bind("--api", options.api, exc) from exc
    for sock in sockets.secure_sockets + sockets.insecure_sockets:
        sock.listen(hc.backlog)
    return hc, sockets


def probe_demo_portal(options: ServerOptions) -> None:
    """When `--demo` will create the demo configuration (no config.db yet), check that its portal
    can be bound before anything is written, so a busy port is one line naming `--demo-portal`."""
    if not options.demo or options.config_db.exists():
        return
    host, port = split_host_port(options.demo_portal, DEFAULT_ISCSI_PORT)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the portal listener binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise _refused_bind("--demo-portal", options.demo_portal, exc) from exc


def _close_all(sockets: Sockets | None) -> None:
    if sockets is not None:
        for sock in sockets.secure_sockets + sockets.insecure_sockets + sockets.quic_sockets:
            sock.close()


async def serve_api(service: TargetService, options: ServerOptions, bound: tuple[HypercornConfig, Sockets], *,
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the v1.0 API against `service` on the sockets `bind_api` made; `task_status` gets
    hypercorn's bound URLs."""
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
        metrics_public=options.metrics_public,
    )
    host, _ = split_host_port(options.api, DEFAULT_API_PORT)
    if not options.api_tls and not is_loopback_host(host):
        log.warning("the API on %s is served WITHOUT TLS (--api-insecure): passwords cross the network in "
                    "clear text", options.api)
    hc, sockets = bound
    # hypercorn serves already-bound sockets given as `fd://N` binds; it gets duplicates, so it and
    # `serve` each close their own descriptor
    hc.bind = [f"fd://{os.dup(sock.fileno())}" for sock in sockets.secure_sockets + sockets.insecure_sockets]
    await hypercorn_serve(app, hc, shutdown_trigger=trio.sleep_forever,  # type: ignore[arg-type]
                          task_status=task_status)


async def serve(options: ServerOptions, *,
                task_status: trio.TaskStatus[TargetService] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the target (and the API unless disabled) until cancelled. Raises `OptionsError` before
    touching anything when the options must not start (ServerOptions.check, an unusable TLS
    certificate or key)."""
    options.check()
    api: tuple[HypercornConfig, Sockets] | None = None
    if options.api_enabled:
        await trio.to_thread.run_sync(options.api_ssl_context)  # a bad certificate/key fails here, clearly
        api = bind_api(options)
    try:
        probe_demo_portal(options)
        # Issue #10 items 4, 8, 11: lock the data directory before writing anything in it, owner-only
        # modes, descriptor budget raised.
        with claimed(options.data_dir):
            await _serve_claimed(options, api, task_status=task_status)
    finally:
        _close_all(api[1] if api else None)


async def _serve_claimed(options: ServerOptions, api: tuple[HypercornConfig, Sockets] | None, *,
                         task_status: trio.TaskStatus[TargetService]) -> None:
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
            if api is not None:
                api_binds = await nursery.start(serve_api, service, options, api)
            portals = ", ".join(f"{h}:{p}" for h, p in service.addresses()) or "none"
            log.info("pyscsi-target %s ready: iSCSI portals %s; API %s", __version__, portals,
                     ", ".join(api_binds) or "disabled")
            # issue #13 item 7: a Type=notify unit is started once portals and API listen
            sd_notify("READY=1", f"STATUS=iSCSI portals {portals}; API {', '.join(api_binds) or 'disabled'}")
            task_status.started(service)
            try:
                await trio.sleep_forever()
            finally:
                sd_notify("STOPPING=1", "STATUS=shutting down")
    finally:
        store.close()
