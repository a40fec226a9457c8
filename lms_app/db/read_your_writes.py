"""Read-your-writes across requests: each user's last write position, per school.

After a request of a user commits, the primary's WAL position (`pg_current_wal_insert_lsn()`
read after the commit, so it covers it) is kept in the shared cache for
REPLICA_STICKY_SECONDS under the school and the user, raised only (two concurrent
writes of one user keep the later position). That user's reads use a replica only
once it has replayed that position (lms_app.db.routing). The window only needs to
outlast REPLICA_MAX_LAG_SECONDS: a replica further behind is not read from at all.

The position is also kept in this process, and when the shared cache cannot be read
the user's reads go to the primary: a missing record must never send a user to a
replica that lacks their write. Other users are unaffected.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, current_app
from sqlalchemy import text

from lms_app.caching import safe
from lms_app.caching.keys import tenant_key
from lms_app.tenancy.context import TenantInfo

log = logging.getLogger(__name__)

# The insert position, not the write position: with synchronous_commit off a commit
# returns before its record is written, and the write position can be short of it.
_CURRENT_LSN = text("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
_EXTENSION = "lms_write_positions"
# Above any real WAL position: "this user wrote, where is not known" (read the primary).
UNKNOWN = 1 << 62


class LocalPositions:
    """This process's copy of its users' write positions, so it honours them even
    when the shared cache did not take one; bounded (oldest dropped first)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._positions: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, lsn: int, window_s: float) -> None:
        with self._lock:
            if key not in self._positions and len(self._positions) >= self.max_entries:
                self._positions.pop(next(iter(self._positions)))
            held = self.get(key)
            self._positions[key] = (max(held, lsn), time.monotonic() + window_s)

    def get(self, key: str) -> int:
        found = self._positions.get(key)
        return found[0] if found is not None and found[1] > time.monotonic() else 0


def init_app(app: Flask) -> None:
    app.extensions[_EXTENSION] = LocalPositions()


def _key(tenant: TenantInfo, user_id: int) -> str:
    return tenant_key(tenant, "wal", user_id)


def remember(tenant: TenantInfo, user_id: int) -> None:
    """Record the primary's WAL position now (after the request's commit) as this
    user's last write in this school."""
    from lms_app.db.engines import READ_BIND
    from lms_app.extensions import db

    try:
        with db.engines[READ_BIND].connect() as conn:
            lsn = int(conn.execute(_CURRENT_LSN).scalar_one())
    except Exception as exc:
        # The write committed; its answer must not become an error. Without its
        # position, this user reads from the primary for the whole window.
        log.warning("write_position_unknown error=%s", type(exc).__name__)
        lsn = UNKNOWN
    window_s = current_app.config["LMS_SETTINGS"].replica_sticky_s
    key = _key(tenant, user_id)
    current_app.extensions[_EXTENSION].put(key, lsn, window_s)
    if not safe.cache_raise_to(key, lsn, int(window_s * 1000)):
        # Other processes that can read the cache will not know of this write.
        log.warning("write_position_not_shared tenant=%s user=%s", tenant.slug, user_id)


def written_lsn(tenant: TenantInfo, user_id: int) -> int | None:
    """The WAL position this user's reads must see (0: none), None if unknown."""
    key = _key(tenant, user_id)
    shared = safe.cache_get_int(key)
    if shared is None:
        return None
    return max(current_app.extensions[_EXTENSION].get(key), shared)
