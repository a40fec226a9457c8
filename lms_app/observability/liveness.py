"""GET /healthz answered before Flask: a liveness probe needs the process, not the app.

Load balancers and orchestrators probe every few seconds per instance; through Flask
each probe paid for a request context, the before/after hooks and URL matching, about
half of its cost (py-spy under wrk). The answer is the same pre-rendered body as the
route in lms_app.observability.health, which stays for other methods (405) and for
the OpenAPI document. The access line is written as for every other request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from lms_app.observability import access_log, metrics

PATH = "/healthz"
BODY = b'{"status":"ok"}'
_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


class Liveness:
    def __init__(self, app: Callable[..., Iterable[bytes]], log_requests: bool) -> None:
        self.app = app
        self.log_requests = log_requests

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        method = environ.get("REQUEST_METHOD")
        if environ.get("PATH_INFO") != PATH or method not in ("GET", "HEAD"):
            return self.app(environ, start_response)
        started = time.perf_counter()
        request_id = access_log.request_id(environ.get("HTTP_X_REQUEST_ID"))
        start_response("200 OK", [*_HEADERS, (access_log.REQUEST_ID_HEADER, request_id)])
        metrics.observe_request(PATH, method, 200, time.perf_counter() - started)
        if self.log_requests:
            access_log.write_line(method, PATH, 200, started, None, None, request_id)
        return [b"" if method == "HEAD" else BODY]
