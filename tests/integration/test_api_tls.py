"""Where and how the API may be served (spec Part B §B.1.6, target-rules.md §5.4).

`--api-cert/--api-key` serve it over TLS (checked with a self-signed certificate made here by the
`openssl` CLI and Python's `ssl` client); a non-loopback address without TLS is refused at
start-up unless `--api-insecure` is given, with a message that says what to do.
"""

from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path

import h11
import pytest
import trio

from pyscsi_target.__main__ import main
from pyscsi_target.server.options import OptionsError, ServerOptions, is_loopback_host
from pyscsi_target.server.serve import serve
from tests.support import free_port

from .apiclient import API, ISCSI, ApiClient

#: seconds the test certificate is valid
CERT_DAYS = 1


async def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1 (subjectAltName IP), and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI"):
            pytest.fail("openssl is missing (Debian package openssl)")
        pytest.skip("openssl not installed")
    cert, key = folder / "api-cert.pem", folder / "api-key.pem"
    argv = [openssl, "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(cert), "-days", str(CERT_DAYS), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1"]
    with trio.fail_after(30):
        await trio.run_process(argv, capture_stdout=True, capture_stderr=True)
    return cert, key


def tls_options(root: Path, cert: Path, key: Path) -> ServerOptions:
    return ServerOptions(data_dir=root / "data", api=f"127.0.0.1:{free_port()}", api_cert=cert, api_key=key)


def trusting(cert: Path) -> ssl.SSLContext:
    """A client context that trusts only `cert` and checks the host name (127.0.0.1)."""
    return ssl.create_default_context(cafile=str(cert))


async def test_api_is_served_over_tls_with_the_given_certificate(nursery: trio.Nursery, tmp_path: Path) -> None:
    cert, key = await make_certificate(tmp_path)
    options = tls_options(tmp_path, cert, key)
    await nursery.start(serve, options)
    api = ApiClient.for_server(options, ssl_context=trusting(cert))
    reply = await api.get(f"{API}/system/version/")
    assert reply.status == 200 and reply.json()["name"] == "pyscsi-target"
    reply = await api.post(f"{ISCSI}/target/", {"iscsi_target_name": "tls"})
    assert reply.status == 201
    assert reply.headers["location"] == f"https://127.0.0.1:{api.port}{ISCSI}/target/1/"
    # the server presents exactly our certificate, over TLS 1.2 or later
    stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", api.port), trusting(cert),
                            server_hostname="127.0.0.1")
    await stream.do_handshake()
    assert stream.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert stream.version() in ("TLSv1.2", "TLSv1.3")
    await stream.aclose()


async def test_tls_api_still_wants_the_password(nursery: trio.Nursery, tmp_path: Path) -> None:
    cert, key = await make_certificate(tmp_path)
    options = tls_options(tmp_path, cert, key)
    await nursery.start(serve, options)
    api = ApiClient.for_server(options, ssl_context=trusting(cert))
    reply = await api.request("GET", f"{ISCSI}/target/", auth=False)
    assert reply.status == 401 and reply.headers["www-authenticate"] == 'Basic realm="pyscsi-target"'


async def test_plain_http_to_the_tls_port_gets_no_answer(nursery: trio.Nursery, tmp_path: Path) -> None:
    cert, key = await make_certificate(tmp_path)
    options = tls_options(tmp_path, cert, key)
    await nursery.start(serve, options)
    plain = ApiClient.for_server(options)
    with pytest.raises((EOFError, h11.RemoteProtocolError, trio.BrokenResourceError)):
        await plain.get(f"{API}/system/version/")


async def test_an_unusable_certificate_stops_the_start(nursery: trio.Nursery, tmp_path: Path) -> None:
    _, key = await make_certificate(tmp_path)
    options = tls_options(tmp_path, key, key)  # a key where the certificate belongs
    with pytest.raises(OptionsError, match=r"--api-cert .* cannot use them"):
        await nursery.start(serve, options)


# -- binding: loopback, or TLS, or an explicit --api-insecure ------------------------------------


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.0.2.10", False), ("2001:db8::1", False), ("example.org", False),
    ("::ffff:192.0.2.10", False),
])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("api", ["0.0.0.0:8080", "[::]:8080", "192.0.2.10:8443", "example.org:8080"])
def test_non_loopback_api_needs_tls_or_the_insecure_flag(api: str) -> None:
    with pytest.raises(OptionsError, match=r"without TLS.*--api-insecure"):
        ServerOptions(api=api).check()
    ServerOptions(api=api, api_insecure=True).check()
    ServerOptions(api=api, api_cert=Path("c.pem"), api_key=Path("k.pem")).check()
    ServerOptions(api=api, api_enabled=False).check()  # no API, nothing to refuse


@pytest.mark.parametrize("api", ["127.0.0.1:8080", "[::1]:8080", "localhost:8080"])
def test_loopback_api_needs_nothing_more(api: str) -> None:
    ServerOptions(api=api).check()


def test_certificate_and_key_go_together() -> None:
    with pytest.raises(OptionsError, match="--api-cert and --api-key go together"):
        ServerOptions(api_cert=Path("c.pem")).check()
    with pytest.raises(OptionsError, match="--api-cert and --api-key go together"):
        ServerOptions(api_key=Path("k.pem")).check()


def test_a_nonsense_api_address_is_refused() -> None:
    with pytest.raises(OptionsError, match="--api"):
        ServerOptions(api="127.0.0.1:http").check()


def test_cli_refuses_plain_api_on_a_public_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert main(["serve", "--data-dir", str(data), "--api", f"0.0.0.0:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve the API on 0.0.0.0" in err and "--api-insecure" in err, err
    assert not data.exists()  # refused before anything was touched


def test_cli_refuses_an_unreadable_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, missing = tmp_path / "data", tmp_path / "missing.pem"
    argv = ["serve", "--data-dir", str(data), "--api", f"127.0.0.1:{free_port()}",
            "--api-cert", str(missing), "--api-key", str(missing)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--api-cert {missing}" in err and "No such file or directory" in err, err
    assert not data.exists()


async def test_serve_refuses_before_listening(nursery: trio.Nursery, tmp_path: Path) -> None:
    portal = free_port()
    options = ServerOptions(data_dir=tmp_path / "data", api=f"0.0.0.0:{free_port()}", demo=True,
                            demo_portal=f"127.0.0.1:{portal}")
    with pytest.raises(OptionsError):
        await nursery.start(serve, options)
    assert not options.data_dir.exists()
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", portal)
