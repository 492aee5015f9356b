"""Command line: `pyscsi-target serve [options]` (issue #2 fixes these options), and
`pyscsi-target config export|import` (backup and restore, issue #10 item 12)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import trio

from . import __version__
from .api.refusals import describe
from .model import ApplyError, ConfigError, StoreError
from .server import configtool
from .server.logging_setup import DEFAULT_LOG_FORMAT, LOG_FORMATS, configure, reset_level
from .server.options import (
    DEFAULT_API_ADDRESS,
    DEFAULT_DATA_DIR,
    DEFAULT_DEMO_PORTAL,
    DEFAULT_DEVICE_ROOT,
    DEFAULT_LOG_LEVEL,
    LOG_LEVEL_NAMES,
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
    s.add_argument("--ceph-conf", default=None, metavar="FILE",
                   help="Ceph configuration of the cluster of RBD extents (default: librados's search, "
                        "$CEPH_CONF, /etc/ceph/ceph.conf)")
    s.add_argument("--ceph-id", default=None, metavar="NAME",
                   help="Ceph client name without 'client.' (default admin); its keyring is found the "
                        "usual way (the conf's keyring, /etc/ceph/ceph.client.NAME.keyring)")
    s.add_argument("--demo", action="store_true",
                   help="if the configuration is empty, create a demo target with a 1 GiB LUN")
    s.add_argument("--demo-portal", default=DEFAULT_DEMO_PORTAL, help="portal of the demo target (default %(default)s)")
    s.add_argument("--no-api", action="store_true", help="do not serve the management API")
    s.add_argument("--log-level", default=DEFAULT_LOG_LEVEL,
                   help=f"{', '.join(LOG_LEVEL_NAMES)} (default %(default)s)")
    s.add_argument("--log-format", choices=LOG_FORMATS, default=DEFAULT_LOG_FORMAT,
                   help="text, or json: one object per line for log shippers (default %(default)s)")
    s.add_argument("--metrics-public", action="store_true",
                   help="serve GET /metrics (Prometheus) without the API password")
    _config_parser(sub)
    return ap


def _config_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`config export` and `config import` (README "Backup, restore and upgrade")."""
    c = sub.add_parser("config", help="export or import the configuration (backup and restore)")
    actions = c.add_subparsers(dest="config_command", required=True)
    e = actions.add_parser(
        "export", help="print the configuration as JSON (a consistent snapshot, also while the server runs)",
        description="Print the configuration as JSON on stdout. It includes the CHAP secrets: keep the "
                    "file private (e.g. umask 077).")
    i = actions.add_parser(
        "import", help="replace the configuration of a data directory by an exported one (server stopped)",
        description="Validate FILE (JSON from `config export`, - for stdin) like API writes and write it to "
                    "the data directory in one transaction. Refused while a server runs on the directory.")
    i.add_argument("file", help="the exported JSON, or - for stdin")
    i.add_argument("--replace", action="store_true",
                   help="overwrite the data directory's configuration if it is not empty")
    i.add_argument("--extent-root", type=Path, action="append", default=[],
                   help="directory File extents must lie in, as for serve (repeatable; default DATA_DIR/extents)")
    i.add_argument("--device-root", type=Path, default=Path(DEFAULT_DEVICE_ROOT),
                   help="where Disk/ZVOL extents are looked up, as for serve (default %(default)s)")
    i.add_argument("--allow-file-devices", action="store_true",
                   help="accept regular files standing in for Disk/ZVOL devices, as for serve")
    for p in (e, i):
        p.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR),
                       help="the server's data directory (default %(default)s)")


async def _run(options: ServerOptions) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, options)
            async for signum in signals:
                if signum == signal.SIGHUP:  # issue #13 item 5: not an exit; back to --log-level
                    reset_level(options.log_level)
                    continue
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


def _config_command(args: argparse.Namespace) -> int:
    """Run `config export|import`: 0, or one line per problem on stderr and 1."""
    logging.basicConfig(level=logging.WARNING, format="pyscsi-target: %(message)s", stream=sys.stderr)
    try:
        if args.config_command == "export":
            sys.stdout.write(configtool.export_json(args.data_dir))
            return 0
        text = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        options = ServerOptions(data_dir=args.data_dir, extent_roots=args.extent_root, device_root=args.device_root,
                                allow_file_devices=args.allow_file_devices)
        cfg = configtool.parse_backup(text, options)
        configtool.import_config(cfg, args.data_dir, replace=args.replace)
    except ConfigError as exc:  # like a 409 body: one line per field and message
        for field, messages in exc.errors.items():
            for message in messages:
                print(f"{field}: {message}", file=sys.stderr)
        return 1
    except (OSError, StoreError, OptionsError) as exc:
        print(f"pyscsi-target: {exc}", file=sys.stderr)
        return 1
    print(f"pyscsi-target: configuration imported into {args.data_dir}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "config":
        return _config_command(args)
    options = ServerOptions(
        data_dir=args.data_dir,
        api=args.api,
        api_password_file=args.api_password_file,
        extent_roots=args.extent_root,
        device_root=args.device_root,
        allow_file_devices=args.allow_file_devices,
        ceph_conf=args.ceph_conf,
        ceph_id=args.ceph_id,
        demo=args.demo,
        demo_portal=args.demo_portal,
        log_level=args.log_level,
        api_enabled=not args.no_api,
        api_cert=args.api_cert,
        api_key=args.api_key,
        api_insecure=args.api_insecure,
        metrics_public=args.metrics_public,
        log_format=args.log_format,
    )
    try:  # issue #13 item 6: every refusal is one line naming the flag, before anything is written
        options.check()
        if options.api_enabled:
            options.api_ssl_context()
    except OptionsError as exc:
        print(f"pyscsi-target: {exc}", file=sys.stderr)
        return USAGE_ERROR
    configure(options.log_level, options.log_format)
    failures: list[BaseException] = []
    try:
        trio.run(_run, options)
    except* KeyboardInterrupt:
        pass
    except* (OSError, ConfigError, ApplyError, StoreError, OptionsError) as group:
        failures.extend(_leaves(group))
    for failure in failures:  # a live refusal at start-up (a port in use) names the API field, as a 409 does
        print(f"pyscsi-target: {describe(failure) if isinstance(failure, ApplyError) else failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
