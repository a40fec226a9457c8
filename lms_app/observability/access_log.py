"""One JSON line per request, written by the app (gunicorn's own access log is off).

gunicorn's access log formats a dictionary of every header for each request (about
5 % of a cheap request's time, measured with py-spy); this line costs one f-string
and one `write(2)`. It names the route template, never the path or the query string
(ids and search terms stay out), the tenant's slug and the user's id, never an
e-mail or a token. The request id is taken from `X-Request-ID` when it looks like
one, else made here, and sent back in the response.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

from flask import Flask, Response, current_app, g, request

from lms_app.observability import metrics

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _method() -> str:
    method = request.method
    return method if method.isascii() and method.isalpha() else "OTHER"


def _quoted(value: str | None) -> str:
    return "null" if value is None else f'"{value}"'


def request_id(given: str | None) -> str:
    """The client's request id when it looks like one, else a new one."""
    return given if given and _SANE_REQUEST_ID.fullmatch(given) else os.urandom(8).hex()


def _start() -> None:
    g.lms_started = time.perf_counter()
    g.request_id = request_id(request.headers.get(REQUEST_ID_HEADER))


def _write_line(response: Response) -> Response:
    started = g.get("lms_started")
    if started is None:  # a request refused before any hook ran
        return response
    response.headers[REQUEST_ID_HEADER] = g.request_id
    rule = request.url_rule
    route = rule.rule if rule is not None else None
    method = _method()
    metrics.observe_request(route, method, response.status_code, time.perf_counter() - started)
    if not current_app.config["LMS_SETTINGS"].access_log:
        return response
    tenant = g.get("tenant")
    user = g.get("user")
    write_line(
        method,
        route,
        response.status_code,
        started,
        tenant.slug if tenant is not None else None,
        user.id if user is not None else None,
        g.request_id,
    )
    return response


def write_line(
    method: str,
    route: str | None,
    status: int,
    started: float,
    tenant: str | None,
    user: int | None,
    request_id: str,
) -> None:
    # Every value is either a number or one of: a route template of this app, a
    # method, a validated slug or request id, a timestamp: none needs JSON escaping,
    # which json.dumps would charge for on every request.
    line = (
        f'{{"ts":"{datetime.now(UTC).isoformat(timespec="milliseconds")}",'
        f'"level":"INFO","logger":"access","method":"{method}",'
        f'"route":{_quoted(route)},'
        f'"status":{status},'
        f'"ms":{(time.perf_counter() - started) * 1000:.2f},'
        f'"tenant":{_quoted(tenant)},'
        f'"user":{"null" if user is None else user},'
        f'"request_id":"{request_id}"}}\n'
    )
    # One write(2) per line: lines of concurrent workers never interleave (< PIPE_BUF).
    os.write(1, line.encode())


def init_app(app: Flask) -> None:
    # The request id, the metrics and (ACCESS_LOG) the line, for every request.
    # First of the before-request hooks, so the time counts all of them.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_write_line)
