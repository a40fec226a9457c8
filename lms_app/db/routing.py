"""Which server a read-only request's plain reads go to: a replica, or the primary.

lms_app.db.session decides *whether* a statement may leave the primary (a plain read
of a read-only request, nothing written or locked before it). This module decides
*where* it goes, once per request and user:

- no replica configured: the primary's autocommit read pool, as before (the cost is
  one attribute lookup);
- a replica fit to serve (lms_app.db.replicas) that has replayed the WAL position of
  this user's last write in this school, if they wrote within
  REPLICA_STICKY_SECONDS (lms_app.db.read_your_writes); else the primary;
- the primary for anything that fills a shared cache (`primary_reads()`): a value
  read from a lagging replica would be kept under the new cache generation and
  served to everyone for its whole TTL;
- the primary for the rest of a request whose replica failed (the failed read, or
  the whole view, runs again on the primary: lms_app.db.retry).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

# lms_app.db.read_your_writes is imported where used: it needs the cache, whose
# extension module imports the Session class, which imports this module.
from lms_app.db.engines import READ_BIND, replica_engine
from lms_app.db.replicas import Replica, ReplicaSet

_EXTENSION = "lms_replicas"


def init_app(app: Flask, engines: dict[Any, Engine]) -> None:
    settings = app.config["LMS_SETTINGS"]
    if not settings.database_replica_urls:
        app.extensions[_EXTENSION] = None
        return
    replicas = []
    for url in settings.database_replica_urls:
        parsed = make_url(url)
        name = f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"
        replicas.append(Replica(name, replica_engine(url, settings)))
    replica_set = ReplicaSet(
        replicas,
        primary=engines[READ_BIND],
        check_s=settings.replica_check_s,
        max_lag_s=settings.replica_max_lag_s,
        max_lag_bytes=settings.replica_max_lag_bytes,
        backoff_s=settings.replica_backoff_s,
    )
    app.extensions[_EXTENSION] = replica_set
    from lms_app.db import read_your_writes

    read_your_writes.init_app(app)
    for replica in replicas:
        _flag_failures(replica)
    app.before_request(_forget_routing)
    app.after_request(_remember_writes)
    from lms_app.db.session import TenantSession

    if not event.contains(TenantSession, "after_commit", _note_commit):
        event.listen(TenantSession, "after_commit", _note_commit)


_REQUEST_STATE = (
    "lms_read_choice",
    "lms_replica_failed",
    "lms_replica_error",
    "lms_committed",
    "lms_primary_reads",
)


def _forget_routing() -> None:
    """Nothing of a previous request sharing this app context (tests, scripts) may
    route this one: not its replica, its fallback, nor its commit."""
    for name in _REQUEST_STATE:
        g.pop(name, None)


def _note_commit(session: Any) -> None:
    if has_request_context():
        g.lms_committed = True


def replica_set() -> ReplicaSet | None:
    return current_app.extensions.get(_EXTENSION)


def replica_engines(app: Flask) -> list[Engine]:
    found = app.extensions.get(_EXTENSION)
    return [r.engine for r in found.replicas] if found is not None else []


def read_engine() -> Engine:
    """The engine for this request's plain reads (schema not yet applied)."""
    from lms_app.extensions import db

    primary_reads = db.engines[READ_BIND]
    replicas = current_app.extensions.get(_EXTENSION)
    if replicas is None or g.get("lms_primary_reads") or g.get("lms_replica_failed"):
        return primary_reads
    user = g.get("user")
    user_id = user.id if user is not None else None
    choice = g.get("lms_read_choice")
    if choice is None or choice[0] != user_id:
        replica = _choose(replicas, user_id)
        choice = g.lms_read_choice = (user_id, replica)
    return choice[1].engine if choice[1] is not None else primary_reads


def _choose(replicas: ReplicaSet, user_id: int | None) -> Replica | None:
    min_lsn = 0
    if user_id is not None:
        from lms_app.db import read_your_writes
        from lms_app.tenancy.context import current_tenant

        tenant = current_tenant()
        if tenant is not None:
            written = read_your_writes.written_lsn(tenant, user_id)
            if written is None:  # unknown (the cache is out): this user may have written
                replicas.count("primary_write_record_unknown")
                return None
            min_lsn = written
    return replicas.choose(min_lsn)


def chosen_replica() -> Replica | None:
    """The replica this request reads from, if any."""
    choice = g.get("lms_read_choice") if has_request_context() else None
    return choice[1] if choice is not None else None


def replica_of(engine: Engine) -> Replica | None:
    replicas = current_app.extensions.get(_EXTENSION)
    if replicas is None:
        return None
    for replica in replicas.replicas:
        if replica.engine.pool is engine.pool:
            return replica
    return None


def fall_back_to_primary(replica: Replica, error: BaseException) -> None:
    """A read on `replica` failed: the rest of this request reads from the primary,
    and a replica that could not be reached is taken out for a while."""
    g.lms_replica_failed = True
    g.pop("lms_replica_error", None)
    replicas = current_app.extensions[_EXTENSION]
    replicas.count("primary_after_replica_error")
    if _server_trouble(error):
        replicas.failed(replica, error)


def _server_trouble(error: BaseException) -> bool:
    """The replica itself is out (no connection, shutting down, starting up), rather
    than this statement failing on it (a recovery conflict, a schema not there yet,
    a pool with no free connection)."""
    if getattr(error, "connection_invalidated", False):
        return True
    if not isinstance(error, OperationalError):
        return False
    pgcode = getattr(error.orig, "pgcode", None)
    return pgcode is None or pgcode.startswith(("57P", "08"))


def _flag_failures(replica: Replica) -> None:
    """Errors on a replica's connections outside lms_app.db.reads (Session reads)
    mark the request, so lms_app.db.retry runs the view again on the primary."""

    @event.listens_for(replica.engine, "handle_error")
    def _on_error(context: Any) -> None:
        if has_request_context():
            # With the exception itself: only that one, reaching the view's retry,
            # is the replica's (a failed status check is handled where it happens).
            g.lms_replica_error = (replica, context.sqlalchemy_exception)


@contextlib.contextmanager
def primary_reads() -> Iterator[None]:
    """Reads inside the block go to the primary (cache fills, generation snapshots)."""
    if not has_request_context():
        yield
        return
    outer = g.get("lms_primary_reads", False)
    g.lms_primary_reads = True
    try:
        yield
    finally:
        g.lms_primary_reads = outer


def _remember_writes(response: Any) -> Any:
    """After a request that wrote, this user's reads wait for the replicas to replay it."""
    user = g.get("user")
    writes = request.method not in ("GET", "HEAD", "OPTIONS") and response.status_code < 400
    if user is not None and (writes or g.get("lms_committed")):
        from lms_app.db import read_your_writes
        from lms_app.tenancy.context import current_tenant

        tenant = current_tenant()
        if tenant is not None:
            read_your_writes.remember(tenant, user.id)
    return response
