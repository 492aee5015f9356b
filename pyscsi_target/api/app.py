"""The Quart-Trio application: blueprints, authentication, trailing slashes and error bodies.

`create_app` is what server/ serves with hypercorn in the target's own trio loop. Every request is
authenticated first (401; late answers or 429 where root's password is being guessed, api/auth.py),
so nothing, not even a 404, answers a stranger. Then a GET or HEAD without its trailing slash is
redirected (301) to the slashed URL, and other methods are served directly (spec Part B §B.1.5).
Every error leaves as one of the documented bodies; an unexpected exception is logged and answered
500 without details.
"""

from __future__ import annotations

import logging

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..model.control import TargetControl
from ..model.validation import DEFAULT_DEVICE_ROOT, ValidationContext
from .audit import basic_user, log_failed_login
from .auth import REALM, AuthGuard
from .crud import collection_blueprint, global_blueprint
from .http import MAX_BODY_BYTES, BadRequest, empty_response, error_response
from .listing import check_format
from .metrics import METRICS_PATH, metrics_blueprint, metrics_registry
from .resources import COLLECTION_RESOURCES
from .state import EXTENSION, ApiState, api_state
from .system import system_blueprint

log = logging.getLogger(__name__)


async def _authenticate() -> Response | None:
    if request.path == METRICS_PATH and api_state().metrics_public:
        return None  # --metrics-public: scrapers need no credentials
    guard = api_state().guard
    address = request.remote_addr or "unknown"
    header = request.headers.get("Authorization")
    judgement = guard.judge(address, header)
    if judgement.status == 429:
        message = "Too many failed logins from this address; try again later."
        return error_response(429, message, {"Retry-After": str(judgement.retry_after)})
    if judgement.wait:  # root's password is being guessed from this address (api/auth.py)
        try:
            await trio.sleep(judgement.wait)
        finally:
            guard.done_waiting(address)
    if judgement.status is None:
        return None
    if header is not None:  # a wrong user name or password (an absent header is no login attempt)
        log_failed_login(address, basic_user(header))
    return empty_response(401, {"WWW-Authenticate": f'Basic realm="{REALM}"'})


async def _count_request(response: Response) -> Response:
    """Process statistics: every answered request by status (`pyscsi_api_requests_total`)."""
    counts = api_state().api_requests
    counts[response.status_code] = counts.get(response.status_code, 0) + 1
    return response


async def _slash_and_format() -> Response | None:
    rule = request.url_rule
    if (
        request.method in ("GET", "HEAD")
        and rule is not None
        and rule.rule.endswith("/")
        and not request.path.endswith("/")
    ):
        query = request.query_string.decode("latin-1")
        return empty_response(301, {"Location": request.path + "/" + (f"?{query}" if query else "")})
    check_format(request.args)
    return None


async def _bad_request(exc: BadRequest) -> Response:
    return error_response(400, exc.message)


async def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    if code == 404:
        return empty_response(404)
    headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
    if code == 413:
        return error_response(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    return error_response(code, exc.name + ".", headers)


async def _unexpected(exc: Exception) -> Response:
    log.exception("API request %s %s failed", request.method, request.path)
    return error_response(500, "Internal server error.")


def create_app(
    control: TargetControl,
    *,
    password: str,
    extent_roots: list[str],
    device_root: str = DEFAULT_DEVICE_ROOT,
    allow_file_devices: bool = False,
    version: str,
    metrics_public: bool = False,
) -> QuartTrio:
    """The v1.0 management API over `control` (see docs/api.md).

    `password` is root's (non-empty); File extents must lie inside one of `extent_roots`; Disk
    extents name block devices under `device_root` (regular files too with `allow_file_devices`);
    `version` is reported by /system/version/; `metrics_public`: `GET /metrics` needs no
    credentials (api/metrics.py).
    """
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    context = ValidationContext.of(extent_roots, device_root, allow_file_devices)
    state = ApiState(control, context, AuthGuard(password), version, metrics_public=metrics_public)
    state.metrics = metrics_registry(control, state.api_requests)
    app.extensions[EXTENSION] = state
    app.before_request(_authenticate)
    app.before_request(_slash_and_format)
    app.after_request(_count_request)
    app.register_blueprint(metrics_blueprint())
    app.register_blueprint(global_blueprint())
    for res in COLLECTION_RESOURCES:
        app.register_blueprint(collection_blueprint(res))
    app.register_blueprint(system_blueprint())
    app.register_error_handler(BadRequest, _bad_request)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app
