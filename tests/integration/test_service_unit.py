"""Issue #13 item 7: the systemd unit (contrib/pyscsi-target.service) and the readiness protocol.

- sd_notify: a real server subprocess with `$NOTIFY_SOCKET` pointing at a real AF_UNIX datagram
  socket sends READY=1 (with STATUS=) once portals and API listen, STOPPING=1 on SIGTERM; the
  abstract namespace (`@name`) works too.
- the unit passes `systemd-analyze verify` (with ExecStart pointed at this venv's console script),
  its flags are ones `serve` accepts, and its ReadWritePaths cover the data directory and the
  extent roots it names.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from pyscsi_target.__main__ import parser
from pyscsi_target.server.sdnotify import sd_notify
from tests.support import free_port

from .apiclient import ApiClient
from .reliability import REPO, STARTUP_TIMEOUT_S

UNIT = REPO / "contrib" / "pyscsi-target.service"
#: where the unit expects the console script (README "Running it as a service")
INSTALLED_BINARY = "/opt/pyscsi-target/.venv/bin/pyscsi-target"
#: largest notification datagram we read
DATAGRAM_BYTES = 4096


def receive(sock: socket.socket) -> dict[str, str]:
    sock.settimeout(STARTUP_TIMEOUT_S)
    data = sock.recv(DATAGRAM_BYTES).decode()
    return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)


def notify_socket(path: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    return sock


def test_server_reports_ready_then_stopping(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    api = f"127.0.0.1:{free_port()}"
    portal = f"127.0.0.1:{free_port()}"
    with notify_socket(path) as sock:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyscsi_target", "serve", "--data-dir", str(tmp_path / "data"), "--demo",
             "--demo-portal", portal, "--api", api, "--log-level", "WARNING"],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": path},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            ready = receive(sock)
            assert ready["READY"] == "1"
            assert portal in ready["STATUS"] and api in ready["STATUS"]
            # READY means listening: both the portal and the API accept connections now
            socket.create_connection(("127.0.0.1", int(portal.rsplit(":", 1)[1])), timeout=5).close()
            client = ApiClient("127.0.0.1", int(api.rsplit(":", 1)[1]),
                               (tmp_path / "data" / "api-password").read_text().strip())
            assert trio.run(client.request, "GET", "/api/v1.0/system/version/").status == 200
            proc.send_signal(signal.SIGTERM)
            assert receive(sock)["STOPPING"] == "1"
            assert proc.wait(STARTUP_TIMEOUT_S) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"pyscsi-target-test-{os.getpid()}"
    with notify_socket(b"\0" + name.encode()) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify("READY=1", "STATUS=hello")
        assert receive(sock) == {"READY": "1", "STATUS": "hello"}


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sd_notify("READY=1")


def test_unreachable_notify_socket_is_a_warning_not_a_failure(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not sd_notify("READY=1")
    assert "cannot notify systemd" in caplog.text
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    assert not sd_notify("READY=1")


def unit_values(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{key}=")]


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: `make test` installs Debian's systemd")
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    script = Path(sys.executable).parent / "pyscsi-target"
    assert script.is_file(), f"the console script {script} is missing (pip install -e .)"
    text = UNIT.read_text()
    assert INSTALLED_BINARY in text
    copy = tmp_path / "pyscsi-target.service"
    copy.write_text(text.replace(INSTALLED_BINARY, str(script)))
    proc = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "pyscsi-target.service" not in proc.stderr, proc.stderr  # no warning about our unit


def test_unit_is_type_notify_and_hardened() -> None:
    assert unit_values("Type") == ["notify"]
    assert unit_values("ProtectSystem") == ["strict"]
    assert unit_values("NoNewPrivileges") == ["yes"]
    assert int(unit_values("LimitNOFILE")[0]) >= 4096


def test_unit_command_line_is_one_serve_accepts_and_may_write_where_it_must() -> None:
    (exec_start,) = unit_values("ExecStart")
    argv = shlex.split(exec_start)
    assert argv[0] == INSTALLED_BINARY
    args = parser().parse_args(argv[1:])
    writable = {Path(p) for value in unit_values("ReadWritePaths") for p in value.split()}
    for needed in [args.data_dir, *args.extent_root]:
        assert needed.is_absolute() and needed in writable, needed
