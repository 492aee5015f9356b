"""Helpers for tests against the real server: start it in the test's trio loop on free loopback
ports, and run libiscsi's tools."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from pyscsi_target.server.options import ServerOptions
from pyscsi_target.server.serve import serve
from pyscsi_target.server.service import TargetService

DEMO_IQN = "iqn.2005-10.org.freenas.ctl:demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_tool(name: str) -> str:
    """The path of a libiscsi tool; in CI a missing tool is an error, locally a skip."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: `make test` installs Debian's libiscsi-bin")
        pytest.skip(f"{name} not installed (Debian package libiscsi-bin)")
    return path


async def run_tool(*argv: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    need_tool(argv[0])
    with trio.fail_after(timeout):
        return await trio.run_process(list(argv), capture_stdout=True, capture_stderr=True, check=check)


@dataclass
class Running:
    service: TargetService
    options: ServerOptions
    portal: str

    @property
    def lun_url(self) -> str:
        return f"iscsi://{self.portal}/{DEMO_IQN}/0"

    @property
    def extent_file(self) -> Path:
        return self.options.data_dir / "extents" / "demo.img"


def demo_options(data_dir: Path, *, api: bool = False) -> ServerOptions:
    return ServerOptions(
        data_dir=data_dir,
        api=f"127.0.0.1:{free_port()}",
        demo=True,
        demo_portal=f"127.0.0.1:{free_port()}",
        api_enabled=api,
    )


async def start(nursery: trio.Nursery, options: ServerOptions) -> Running:
    service = await nursery.start(serve, options)
    return Running(service, options, options.demo_portal)

