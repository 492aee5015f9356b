"""Requests to the v1.0 API with the standard library (urllib), and what their failures mean for
the command line (issue #13 item 4):

- `Refused` (exit status 1): the API answered with a refusal. A 409 body `{"field": ["msg"]}` becomes
  `field: msg` lines; 400/405/413/429 bodies `{"error": "..."}` one line; 401 "authentication
  failed (check --password-file)"; 404 names what was not found.
- `Unreachable` (exit status 3): no answer at all: connection refused, unknown host, timeout, a
  TLS handshake that failed (e.g. an unverifiable certificate: `--cacert FILE` or `--insecure`).

Environment proxies (`http_proxy` ...) are deliberately ignored: the Basic credentials must go to
the server named by `--api`, never to a proxy.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import click

#: the API's path prefix (spec Part B §B.1)
API_PREFIX = "/api/v1.0"
METRICS_PATH = "/metrics"
#: seconds to wait for the API to connect and answer one request
REQUEST_TIMEOUT_S = 30.0
#: exit statuses a script can rely on (issue #13 item 4); 2 (usage) is click's own
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3


class Refused(click.ClickException):
    """The API refused the request; `lines` go to stderr as they are."""

    exit_code = EXIT_REFUSED

    def __init__(self, *lines: str, status: int | None = None) -> None:
        super().__init__(lines[0] if lines else "refused")
        self.lines = list(lines)
        #: the HTTP status of the refusal (None when the client itself refused)
        self.status = status

    def show(self, file: Any = None) -> None:
        for line in self.lines:
            click.echo(line, err=True)


class Unreachable(click.ClickException):
    """No answer from the API."""

    exit_code = EXIT_UNREACHABLE

    def show(self, file: Any = None) -> None:
        click.echo(f"pyscsi-targetctl: {self.message}", err=True)


def error_lines(status: int, body: bytes) -> list[str]:
    """What a refusal says, one line per field and message."""
    if status == 401:
        return ["authentication failed (check --password-file)"]
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict) and set(data) != {"error"}:
        lines = [f"{field}: {message}" for field, messages in data.items()
                 for message in (messages if isinstance(messages, list) else [messages])]
        if lines:
            return lines
    if isinstance(data, dict) and "error" in data:
        return [f"pyscsi-targetctl: {data['error']} (HTTP {status})"]
    return [f"pyscsi-targetctl: the API answered HTTP {status}"]


@dataclass
class Api:
    """The API at `url` (scheme://host:port), as user root with `password`."""

    url: str
    password: str
    cacert: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/").removesuffix(API_PREFIX)
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if self.url.startswith("https://"):
            context = ssl.create_default_context(cafile=self.cacert)
            if self.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def request(self, method: str, path: str, body: Any = None, *, not_found: str | None = None) -> Any:
        """`method` on `API_PREFIX + path`; the decoded JSON answer (None for an empty one). Raises
        `Refused` for any 4xx/5xx (`not_found` is the message for a 404) and `Unreachable`."""
        data = json.dumps(body).encode() if body is not None else None
        raw = self._exchange(method, self.url + API_PREFIX + path, data, "application/json", not_found)
        return json.loads(raw) if raw else None

    def metrics(self) -> str:
        """The server's `GET /metrics` (Prometheus text format), with the API's credentials (a server
        with --metrics-public ignores them)."""
        return self._exchange("GET", self.url + METRICS_PATH, None, "text/plain", None).decode()

    def _exchange(self, method: str, url: str, data: bytes | None, accept: str, not_found: str | None) -> bytes:
        req = urllib.request.Request(url, data=data, method=method)
        token = base64.b64encode(f"root:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        req.add_header("Accept", accept)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=REQUEST_TIMEOUT_S) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            if exc.code == 404 and not_found is not None:
                raise Refused(not_found, status=404) from exc
            raise Refused(*error_lines(exc.code, raw), status=exc.code) from exc
        except urllib.error.URLError as exc:
            raise Unreachable(f"cannot reach the API at {self.url}: {reason(exc.reason)}") from exc
        except (OSError, ssl.SSLError) as exc:  # timeouts and resets while reading the answer
            raise Unreachable(f"cannot reach the API at {self.url}: {reason(exc)}") from exc
        return raw

    def objects(self, resource: str, **filters: Any) -> list[dict[str, Any]]:
        """Every object of an iSCSI `resource` (`limit=0`: no paging), optionally filtered."""
        query = "&".join([f"{k}={urllib.parse.quote(str(v))}" for k, v in filters.items()] + ["limit=0"])
        found = self.request("GET", f"/services/iscsi/{resource}/?{query}")
        return list(found or [])


def reason(exc: object) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}): give --cacert FILE, or --insecure"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {REQUEST_TIMEOUT_S:.0f} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
