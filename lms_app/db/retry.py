"""A request whose transaction lost a race in PostgreSQL runs again, once.

A deadlock or a serialization failure aborts the whole transaction and commits
nothing, so running the view again is safe: it re-reads and re-writes from scratch.
Upserts take their row locks in key order (lms_app.db.upsert), which keeps this
rare; the retry covers the rest. A second failure answers 503 with Retry-After
(lms_app.errors), never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, g

from lms_app.db.routing import fall_back_to_primary
from lms_app.errors import is_transient
from lms_app.extensions import db

log = logging.getLogger(__name__)


def retrying(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except Exception as exc:
            replica, failure = g.pop("lms_replica_error", None) or (None, None)
            if replica is not None and exc is failure:
                # A read-only request whose replica failed: run it again on the
                # primary (lms_app.db.routing); the client never sees the replica's
                # trouble.
                fall_back_to_primary(replica, exc)
                db.session.rollback()
                return view(*args, **kwargs)
            if not is_transient(exc):
                raise
            log.warning("transaction_retry pgcode=%s", exc.orig.pgcode)  # type: ignore[attr-defined]
            db.session.rollback()
        return view(*args, **kwargs)

    return run


def init_app(app: Flask) -> None:
    """Wrap every view registered so far (call after the blueprints)."""
    for endpoint, view in list(app.view_functions.items()):
        app.view_functions[endpoint] = retrying(view)
