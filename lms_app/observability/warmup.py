"""Work a fresh worker does before its first request, not during it.

A new process opens its first database connection of each pool and its Redis
connection lazily, and compiles each statement to SQL the first time it runs: all of
it inside the first requests (measured: a worker's first lesson request took 48 ms,
29 of them compiling three statements, against 2 ms after). gunicorn's
`post_worker_init` runs this instead. A failure is logged and left to the request
that meets it: a worker must boot even while the database is away.

Compiled SQL is cached per engine and shared by every tenant's view of it (the
schema names are put in at execution), so running each hot statement once against
a schema that does not exist fills the cache: the statement is compiled, then
refused for its missing parameters before it is sent, which is all we wanted.
"""

from __future__ import annotations

import contextlib
import logging

from flask import Flask
from sqlalchemy import Engine, Executable, text

from lms_app.db.engines import for_schema
from lms_app.db.routing import replica_set
from lms_app.extensions import cache, db

log = logging.getLogger(__name__)


# A schema no tenant can have (tenant schemas are t<id>_<slug>).
_NOWHERE = "lms_warm_up_absent"


def hot_statements() -> list[Executable]:
    """The statements of the hot read paths, built once at import. Each has bind
    parameters, so running it without values fails before anything is sent: the
    server's log stays clean."""
    from lms_app.accounts.auth import AUTH_STATE
    from lms_app.catalog import queries as catalog
    from lms_app.learning import queries as learning
    from lms_app.learning.service import _RECORD_PROGRESS

    pages = [
        catalog._catalog_statement(False, False, after, overlay, probe)
        for after in (False, True)
        for overlay, probe in ((True, False), (True, True), (False, False))
    ]
    return [
        AUTH_STATE,
        catalog.OVERLAY_STATEMENT,
        catalog.SEARCH_STATEMENT,
        *pages,
        learning.LEARNER_STATE,
        learning.LESSON_WITH_STATE,
        learning.COURSE_FACTS,
        learning.COURSE_PROGRESS,
        *learning.MY_COURSES.values(),
        *_RECORD_PROGRESS.values(),
    ]


def warm_up(app: Flask) -> None:
    # Nothing here may fail a worker's boot: gunicorn stops the whole server when a
    # worker dies in post_worker_init.
    try:
        _warm_up(app)
    except Exception as exc:
        log.warning("warm_up error=%s", type(exc).__name__)


def _warm_up(app: Flask) -> None:
    with app.app_context():
        for bind, engine in db.engines.items():
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            except Exception as exc:
                log.warning("warm_up bind=%s error=%s", bind or "primary", type(exc).__name__)
                continue
            _compile(for_schema(engine, _NOWHERE))
        replicas = replica_set()
        if replicas is not None:
            # Opens each replica's first connection and learns its health and lag
            # before the first read-only request needs them (failures are handled
            # inside: a replica that does not answer is taken out).
            replicas.refresh()
        client = getattr(cache.cache, "_write_client", None)
        if client is not None:
            try:
                client.ping()
            except Exception as exc:
                log.warning("warm_up cache error=%s", type(exc).__name__)


def _compile(engine: Engine) -> None:
    for stmt in hot_statements():
        # Refused by design (no parameters given): the SQL was compiled and cached
        # on the way.
        with contextlib.suppress(Exception), engine.connect() as connection:
            connection.execute(stmt)
