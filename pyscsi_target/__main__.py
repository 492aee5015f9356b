"""Command line: `pyscsi-target serve [options]` (issue #2 fixes these options)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import trio

from . import __version__
from .model import ConfigError, StoreError
from .server.options import (
    DEFAULT_API_ADDRESS,
    DEFAULT_DATA_DIR,
    DEFAULT_DEMO_PORTAL,
    DEFAULT_DEVICE_ROOT,
    OptionsError,
    ServerOptions,
)
from .server.serve import serve

#: exit status for options the server refuses to start with (argparse's usage-error status)
USAGE_ERROR = 2


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pyscsi-target", description="Userspace iSCSI target with the v1.0 API")
    ap.add_argument("--version", action="version", version=f"pyscsi-target {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the iSCSI target and the management API")
    s.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR),
                   help="holds config.db, extents/ and api-password (default %(default)s)")
    s.add_argument("--api", default=DEFAULT_API_ADDRESS, help="API listen address HOST:PORT (default %(default)s)")
    s.add_argument("--api-password-file", type=Path, default=None, help="file holding the API password for root")
    s.add_argument("--api-cert", type=Path, default=None, metavar="FILE",
                   help="PEM certificate (chain): serve the API over TLS (needs --api-key)")
    s.add_argument("--api-key", type=Path, default=None, metavar="FILE", help="PEM private key of --api-cert")
    s.add_argument("--api-insecure", action="store_true",
                   help="allow the API on a non-loopback address without TLS (passwords in clear text)")
    s.add_argument("--extent-root", type=Path, action="append", default=[],
                   help="directory File extents must lie in (repeatable; default DATA_DIR/extents)")
    s.add_argument("--device-root", type=Path, default=Path(DEFAULT_DEVICE_ROOT),
                   help="where Disk/ZVOL extents are looked up (default %(default)s)")
    s.add_argument("--allow-file-devices", action="store_true",
                   help="accept regular files under the device root as Disk/ZVOL extents (tests, stand-ins)")
    s.add_argument("--demo", action="store_true",
                   help="if the configuration is empty, create a demo target with a 1 GiB LUN")
    s.add_argument("--demo-portal", default=DEFAULT_DEMO_PORTAL, help="portal of the demo target (default %(default)s)")
    s.add_argument("--no-api", action="store_true", help="do not serve the management API")
    s.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default %(default)s)")
    return ap


async def _run(options: ServerOptions) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, options)
            async for signum in signals:
                logging.getLogger("pyscsi_target").info(
                    "%s received: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    """The exceptions inside (nested) nursery groups, for a one-line message each."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    options = ServerOptions(
        data_dir=args.data_dir,
        api=args.api,
        api_password_file=args.api_password_file,
        extent_roots=args.extent_root,
        device_root=args.device_root,
        allow_file_devices=args.allow_file_devices,
        demo=args.demo,
        demo_portal=args.demo_portal,
        log_level=args.log_level,
        api_enabled=not args.no_api,
        api_cert=args.api_cert,
        api_key=args.api_key,
        api_insecure=args.api_insecure,
    )
    try:
        options.check()
        if options.api_enabled:
            options.api_ssl_context()
    except OptionsError as exc:
        print(f"pyscsi-target: {exc}", file=sys.stderr)
        return USAGE_ERROR
    failures: list[BaseException] = []
    try:
        trio.run(_run, options)
    except* KeyboardInterrupt:
        pass
    except* (OSError, ConfigError, StoreError, OptionsError) as group:
        failures.extend(_leaves(group))
    for failure in failures:
        print(f"pyscsi-target: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
