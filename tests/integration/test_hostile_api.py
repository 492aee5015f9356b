"""Issue #10 items 5-7 against the real server over real HTTP: hostile text, oversized and
Unicode names, duplicate CHAP users, and the API's slow-down of guessers.

The server runs in the test's trio loop with its API on a free loopback port, from an empty data
directory. Every hostile request must be answered 409 (or 400) and change nothing: the whole
configuration read back through the API is the same before, after, and after a restart of the
server on the same data directory.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from pyscsi_target.api import auth
from pyscsi_target.server.options import ServerOptions
from pyscsi_target.server.serve import serve
from tests.support import free_port

from .apiclient import ISCSI, ApiClient

COLLECTIONS = ("portal", "authorizedinitiator", "authcredential", "target", "targetgroup", "extent",
               "targettoextent", "globalconfiguration")
#: a sample of what model/text.py refuses: newline, NUL, ESC, DEL, a C1 control (CSI), the line
#: separator, a right-to-left override and a byte order mark
HOSTILE = ["\n", "\x00", "\x1b", "\x7f", "\x9b", "\u2028", "\u202e", "\ufeff"]
MSG = "Control characters are not allowed."
TOO_LONG = "At most 255 bytes of UTF-8 (an iSCSI text value, RFC 7143 §6.1)."


@asynccontextmanager
async def running(options: ServerOptions) -> AsyncIterator[ApiClient]:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, options)
        yield ApiClient.for_server(options)
        nursery.cancel_scope.cancel()


async def configuration(api: ApiClient) -> dict[str, Any]:
    return {name: (await api.get(f"{ISCSI}/{name}/")).json() for name in COLLECTIONS}


async def build(api: ApiClient, data_dir: Path) -> None:
    portal = await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{free_port()}"],
                                         "iscsi_target_portal_comment": "Büro ☃"})
    target = await api.create("target", {"iscsi_target_name": "t1", "iscsi_target_alias": "Ελληνικά"})
    await api.create("target", {"iscsi_target_name": "t2"})
    await api.create("authcredential", {"iscsi_target_auth_tag": 1, "iscsi_target_auth_user": "alice",
                                        "iscsi_target_auth_secret": "alice-secret-01"})
    ini = await api.create("authorizedinitiator", {"iscsi_target_initiator_initiators": "iqn.2026-11.org.example:名",
                                                    "iscsi_target_initiator_comment": "ラボ"})
    await api.create("targetgroup", {"iscsi_target": target["id"], "iscsi_target_portalgroup": portal["id"],
                                     "iscsi_target_initiatorgroup": ini["id"]})
    extent = await api.create("extent", {
        "iscsi_target_extent_name": "disque-名", "iscsi_target_extent_type": "File",
        "iscsi_target_extent_path": str(data_dir / "extents" / "lun0.img"), "iscsi_target_extent_filesize": "1MB",
        "iscsi_target_extent_comment": "données ✓"})
    await api.create("targettoextent", {"iscsi_target": target["id"], "iscsi_extent": extent["id"]})


def hostile_requests(ch: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """(method, resource path, body, field that must be named) for one hostile character."""
    bad = f"a{ch}b"
    isns = [] if ch in "\t\n\r" else [  # list separators there
        ("PUT", "globalconfiguration/", {"iscsi_isns_servers": f"10.0.0.1{ch}10.0.0.2"}, "iscsi_isns_servers")]
    return [
        *isns,
        ("POST", "extent/", {"iscsi_target_extent_name": bad, "iscsi_target_extent_type": "File",
                             "iscsi_target_extent_path": "/nonexistent/x.img"}, "iscsi_target_extent_name"),
        ("PUT", "extent/1/", {"iscsi_target_extent_comment": bad}, "iscsi_target_extent_comment"),
        ("POST", "portal/", {"iscsi_target_portal_ips": ["127.0.0.1:1"], "iscsi_target_portal_comment": bad},
         "iscsi_target_portal_comment"),
        ("PUT", "portal/1/", {"iscsi_target_portal_comment": bad}, "iscsi_target_portal_comment"),
        ("POST", "authorizedinitiator/", {"iscsi_target_initiator_comment": bad}, "iscsi_target_initiator_comment"),
        ("PUT", "authorizedinitiator/1/", {"iscsi_target_initiator_comment": bad}, "iscsi_target_initiator_comment"),
        ("POST", "authcredential/", {"iscsi_target_auth_user": bad, "iscsi_target_auth_secret": "bob-secret-0002"},
         "iscsi_target_auth_user"),
        ("PUT", "authcredential/1/", {"iscsi_target_auth_peeruser": bad,
                                      "iscsi_target_auth_peersecret": "alice-peer-0002"}, "iscsi_target_auth_peeruser"),
        ("POST", "target/", {"iscsi_target_name": "t3", "iscsi_target_alias": bad}, "iscsi_target_alias"),
        ("PUT", "target/1/", {"iscsi_target_alias": bad}, "iscsi_target_alias"),
        ("POST", "target/", {"iscsi_target_name": bad}, "iscsi_target_name"),
        ("POST", "targetgroup/", {"iscsi_target": 2, "iscsi_target_portalgroup": 1,
                                  "iscsi_target_initialdigest": bad}, "iscsi_target_initialdigest"),
    ]


def other_refusals() -> list[tuple[str, str, dict[str, Any], str, str | None]]:
    """(method, path, body, field, exact message or None) for oversized names and duplicates."""
    long_iqn = "iqn.2026-11.org.example:" + "x" * 200  # 224 bytes
    dup = "This user already has a credential in auth group 1."
    return [
        ("POST", "authcredential/", {"iscsi_target_auth_user": "alice", "iscsi_target_auth_secret": "other-secret-01"},
         "iscsi_target_auth_user", dup),
        ("POST", "authcredential/", {"iscsi_target_auth_user": "alice", "iscsi_target_auth_secret": "alice-secret-01"},
         "iscsi_target_auth_user", dup),
        ("POST", "authcredential/",
         {"iscsi_target_auth_user": "名" * 86, "iscsi_target_auth_secret": "bob-secret-0002"}, "iscsi_target_auth_user",
         TOO_LONG),
        ("POST", "authorizedinitiator/", {"iscsi_target_initiator_initiators": long_iqn},
         "iscsi_target_initiator_initiators", None),
        ("POST", "target/", {"iscsi_target_name": "名前"}, "iscsi_target_name", None),
        ("POST", "target/", {"iscsi_target_name": "x" * 121}, "iscsi_target_name", None),
    ]


async def raw_status(api: ApiClient, method: str, path: str, *, body: str = "",
                     credentials: str | None = None) -> int:
    """The status of a request sent verbatim: a JSON body json.dumps would not produce, or
    credentials the client would not send (`user:password`; root's by default)."""
    stream = await trio.open_tcp_stream(api.host, api.port)
    token = base64.b64encode((credentials or f"root:{api.password}").encode()).decode()
    data = body.encode()
    head = (f"{method} {path} HTTP/1.1\r\nHost: {api.host}\r\nConnection: close\r\n"
            f"Authorization: Basic {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    try:
        with trio.fail_after(30):
            await stream.send_all(head + data)
            received = b""
            while b"\r\n" not in received:  # the status line is all we need
                chunk = await stream.receive_some(65536)
                assert chunk, received
                received += chunk
    finally:
        await stream.aclose()
    return int(received.split(b" ", 2)[1])


async def test_hostile_input_is_refused_and_changes_nothing_even_after_a_restart(tmp_path: Path) -> None:
    options = ServerOptions(data_dir=tmp_path / "data", api=f"127.0.0.1:{free_port()}")
    async with running(options) as api:
        await build(api, options.data_dir)
        before = await configuration(api)
        for ch in HOSTILE:
            for method, path, body, field in hostile_requests(ch):
                reply = await api.request(method, f"{ISCSI}/{path}", body)
                assert reply.status == 409, (repr(ch), method, path, reply.status, reply.body)
                assert field in reply.json(), (repr(ch), method, path, reply.json())
                if field not in ("iscsi_target_name",):
                    assert MSG in reply.json()[field], (repr(ch), path, reply.json())
        for method, path, body, field, message in other_refusals():
            reply = await api.request(method, f"{ISCSI}/{path}", body)
            assert reply.status == 409 and field in reply.json(), (path, body, reply.status, reply.body)
            if message is not None:
                assert reply.json()[field] == [message]
        # a lone surrogate cannot be stored as UTF-8: the JSON is refused whole
        lone = json.dumps({"iscsi_target_extent_comment": "a"}).replace('"a"', '"a\\ud800b"')
        assert await raw_status(api, "PUT", f"{ISCSI}/extent/1/", body=lone) == 400
        assert await configuration(api) == before
    async with running(options) as api:
        assert await configuration(api) == before


async def test_broken_scripts_on_the_host_never_lock_root_out(tmp_path: Path) -> None:
    """Issue #10 item 5 over hypercorn: other user names and a repeated stale password, far past
    MAX_FAILURES, leave root's next request answered at once."""
    options = ServerOptions(data_dir=tmp_path / "data", api=f"127.0.0.1:{free_port()}")
    async with running(options) as api:
        for i in range(auth.MAX_FAILURES * 3):
            credentials = f"admin{i}:x" if i % 2 else "root:stale-password"
            assert await raw_status(api, "GET", f"{ISCSI}/target/", credentials=credentials) == 401
        start = trio.current_time()
        assert (await api.get(f"{ISCSI}/target/")).status == 200
        assert trio.current_time() - start < auth.FIRST_DELAY_SECONDS
