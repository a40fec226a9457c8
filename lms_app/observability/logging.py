"""Every log line is one JSON object on stdout, with no personal data.

Platforms (Heroku, Kubernetes) collect stdout line by line and log pipelines parse
JSON; the access line (lms_app.observability.access_log) has the same shape. A line
carries the time, level, logger and message, and the request id and school of the
request it belongs to, so an operator can follow one request across lines.

What a line never carries: bind values (engines hide them), e-mails and tokens (the
code logs ids and digests), and exception messages: a database error quotes rows
(`DETAIL: Key (email)=(...)`), others quote input. An exception is logged as the
types of its chain and the code frames only.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime

from flask import g, has_request_context


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context():
            request_id = g.get("request_id")
            tenant = g.get("tenant")
            if request_id is not None:
                entry["request_id"] = request_id
            if tenant is not None:
                entry["tenant"] = tenant.slug
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = exception_outline(record.exc_info[1])
        return json.dumps(entry, ensure_ascii=False, default=str)


def exception_outline(exc: BaseException) -> str:
    """The chain's types and the code frames, never the messages."""
    chain, seen, current = [], set(), exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(type(current).__name__)
        current = current.__cause__ or current.__context__
    frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
    return f"{' <- '.join(chain)}\n{frames.rstrip()}"


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if getattr(root, "_lms_configured", False):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root._lms_configured = True  # type: ignore[attr-defined]
    # Alembic announces every plugin it loads at INFO; keep the migration lines only.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
