"""A tiny HTTP/1.1 client for the management API over trio sockets (plain or TLS).

One request per connection (`Connection: close`), parsed with h11 (already installed: hypercorn
depends on it), JSON bodies, HTTP Basic as user root. Enough for the end-to-end tests; no
redirects, no retries.
"""

from __future__ import annotations

import base64
import json
import ssl
from dataclasses import dataclass
from typing import Any

import h11
import trio

from pyscsi_target.server.options import ServerOptions, split_host_port

API = "/api/v1.0"
ISCSI = API + "/services/iscsi"
#: bytes read per receive while parsing a response
RECV_CHUNK = 65536
#: seconds one request may take before the test fails
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ApiClient:
    def __init__(self, host: str, port: int, password: str, *,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.password = password
        self.ssl_context = ssl_context

    @classmethod
    def for_server(cls, options: ServerOptions, *, ssl_context: ssl.SSLContext | None = None) -> ApiClient:
        """A client for a server started with `options`, using the password it generated."""
        password = (options.data_dir / "api-password").read_text().strip()
        host, port = split_host_port(options.api, 8080)
        return cls(host, port, password, ssl_context=ssl_context)

    async def _open(self) -> trio.abc.Stream:
        stream: trio.abc.Stream = await trio.open_tcp_stream(self.host, self.port)
        if self.ssl_context is not None:
            tls = trio.SSLStream(stream, self.ssl_context, server_hostname=self.host, https_compatible=True)
            await tls.do_handshake()
            return tls
        return stream

    async def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Reply:
        with trio.fail_after(REQUEST_TIMEOUT_S):
            stream = await self._open()
            try:
                return await self._exchange(stream, method, path, body, auth)
            finally:
                await stream.aclose()

    async def _exchange(self, stream: trio.abc.Stream, method: str, path: str, body: Any, auth: bool) -> Reply:
        conn = h11.Connection(h11.CLIENT)
        data = json.dumps(body).encode() if body is not None else b""
        headers = [("Host", f"{self.host}:{self.port}"), ("Connection", "close"),
                   ("Content-Length", str(len(data))), ("Accept", "application/json")]
        if body is not None:
            headers.append(("Content-Type", "application/json"))
        if auth:
            token = base64.b64encode(f"root:{self.password}".encode()).decode()
            headers.append(("Authorization", f"Basic {token}"))
        out = conn.send(h11.Request(method=method, target=path, headers=headers)) or b""
        out += conn.send(h11.Data(data=data)) if data else b""
        out += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(out)
        status, reply_headers, chunks = 0, {}, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(RECV_CHUNK)))
            elif isinstance(event, h11.Response):
                status = event.status_code
                reply_headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return Reply(status, reply_headers, b"".join(chunks))
            elif isinstance(event, h11.ConnectionClosed):
                raise EOFError("the API closed the connection before answering")

    async def get(self, path: str) -> Reply:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any) -> Reply:
        return await self.request("POST", path, body)

    async def put(self, path: str, body: Any) -> Reply:
        return await self.request("PUT", path, body)

    async def delete(self, path: str) -> Reply:
        return await self.request("DELETE", path)

    async def create(self, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to an iSCSI resource; the created object (the test fails on anything but 201)."""
        reply = await self.post(f"{ISCSI}/{resource}/", body)
        assert reply.status == 201, (resource, reply.status, reply.body)
        obj: dict[str, Any] = reply.json()
        return obj
