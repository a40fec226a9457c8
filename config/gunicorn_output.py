"""gunicorn's own output, held to lms_app's rules (config/gunicorn.conf.py installs it).

Requests gunicorn cannot parse as HTTP (a request line over 4 KB, a bad header, a
malformed chunk) never reach the app: gunicorn answers them itself, with an HTML
page, and logs the offending request line, query string included, at WARNING. Its
error bodies become API.md's JSON shape here, and its error log loses request
lines and query strings, which can carry e-mails and names (`?q=jim.doe@...`).

This lives beside the gunicorn settings, not in lms_app, so the master process
loads no application code.
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus

from gunicorn import glogging, util

from lms_app.observability.logging import JsonFormatter

# 'GET /search?q=... HTTP/1.1' as gunicorn quotes what it could not parse, and the
# query string of a URI it names ("Error handling request GET /x?q=...").
_QUOTED = re.compile(r"'[^']*'")
_QUERY = re.compile(r"\?[^\s'\"]*")


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _QUERY.sub("?...", _QUOTED.sub("'...'", message))
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


class RedactingLogger(glogging.Logger):
    """gunicorn's logger with request lines and query strings cut from its error log."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        self.error_log.addFilter(_Redact())
        # One JSON object per line, as the app's own lines (lms_app.observability.logging).
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error, answering in API.md's error shape instead of HTML.
    The message is generic: gunicorn's names the bytes it could not parse."""
    try:
        phrase = HTTPStatus(status_int).phrase
    except ValueError:
        phrase = reason
    body = json.dumps(
        {"code": status_int, "status": phrase, "message": "the request is not valid HTTP"},
        separators=(",", ":"),
    )
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, (head + body).encode("latin1"))


def install() -> None:
    # Workers look the function up on the module at each error, and inherit this from
    # the master when they fork.
    util.write_error = write_json_error
