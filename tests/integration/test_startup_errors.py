"""Issue #13 item 6: start-up errors are one line naming the flag (or file) and the fix, never a
traceback, and a refused start writes nothing: each case runs `python -m pyscsi_target serve` as an
operator would, in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .reliability import REPO, STARTUP_TIMEOUT_S

#: exit status of a refused command line (argparse's usage status, __main__.USAGE_ERROR)
USAGE = 2
#: exit status of a start that failed on the machine (a busy port)
FAILED = 1


def serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyscsi_target", "serve", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def one_line_naming(proc: subprocess.CompletedProcess[str], flag: str) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith(f"pyscsi-target: {flag} "), lines[0]
    return lines[0]


@contextmanager
def busy_port() -> Iterator[str]:
    """A loopback port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield f"127.0.0.1:{s.getsockname()[1]}"


def free_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize(
    ("args", "flag", "says"),
    [
        (["--log-level", "LOUD"], "--log-level", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        (["--api", "127.0.0.1:abc"], "--api", "'abc' is not a number from 1 to 65535"),
        (["--api", ":8080"], "--api", "has no host"),
        (["--api", "127.0.0.1:70000"], "--api", "not a number from 1 to 65535"),
        (["--demo", "--demo-portal", "127.0.0.1:x"], "--demo-portal", "'x' is not a number"),
        (["--device-root", "nowhere/dev"], "--device-root", "not an existing directory"),
        (["--extent-root", "mistyped/extents"], "--extent-root", "does not exist; create it first"),
    ],
)
def test_bad_flag_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str], flag: str, says: str) -> None:
    proc = serve("--data-dir", "data", "--api", free_addr(), "--demo", "--demo-portal", free_addr(), *args,
                 cwd=tmp_path)
    assert proc.returncode == USAGE, proc.stderr
    assert says in one_line_naming(proc, flag)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no data dir, no extent root, no 1 GiB file


def test_existing_extent_root_and_default_root_start(tmp_path: Path) -> None:
    """The refusal is only for a missing --extent-root: an existing one, or the default under the
    data directory (created by the server), is accepted (checked without starting a server)."""
    from pyscsi_target.server.options import OptionsError, ServerOptions

    (tmp_path / "extents").mkdir()
    ServerOptions(data_dir=tmp_path / "data", extent_roots=[tmp_path / "extents"]).check()
    ServerOptions(data_dir=tmp_path / "fresh").check()
    with pytest.raises(OptionsError, match="--extent-root"):
        ServerOptions(data_dir=tmp_path / "data", extent_roots=[tmp_path / "typo"]).check()


def test_busy_api_port_is_one_line_before_anything_is_written(tmp_path: Path) -> None:
    with busy_port() as taken:
        proc = serve("--data-dir", "data", "--api", taken, "--demo", "--demo-portal", free_addr(), cwd=tmp_path)
    assert proc.returncode == FAILED
    line = one_line_naming(proc, "--api")
    assert taken in line and "already in use" in line
    assert list(tmp_path.iterdir()) == []  # the demo configuration was not written


def test_busy_demo_portal_is_one_line_before_anything_is_written(tmp_path: Path) -> None:
    with busy_port() as taken:
        proc = serve("--data-dir", "data", "--api", free_addr(), "--demo", "--demo-portal", taken, cwd=tmp_path)
    assert proc.returncode == FAILED
    line = one_line_naming(proc, "--demo-portal")
    assert taken in line and "already in use" in line
    assert list(tmp_path.iterdir()) == []
