"""Read-your-writes across requests: each user's last write position, per school.

After a request of a user commits, the primary's WAL position (`pg_current_wal_lsn()`
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

import threading
import time

from flask import current_app
from sqlalchemy import text

from lms_app.caching import safe
from lms_app.caching.keys import tenant_key
from lms_app.tenancy.context import TenantInfo

_CURRENT_LSN = text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
# Kept here as well, so this process honours its own users' writes even when the
# shared cache did not take them; bounded (oldest dropped first).
_LOCAL_MAX = 10_000
_local: dict[str, tuple[int, float]] = {}
_local_lock = threading.Lock()


def _key(tenant: TenantInfo, user_id: int) -> str:
    return tenant_key(tenant, "wal", user_id)


def remember(tenant: TenantInfo, user_id: int) -> None:
    from lms_app.db.engines import READ_BIND
    from lms_app.extensions import db

    settings = current_app.config["LMS_SETTINGS"]
    with db.engines[READ_BIND].connect() as conn:
        lsn = int(conn.execute(_CURRENT_LSN).scalar_one())
    window_s = settings.replica_sticky_s
    with _local_lock:
        if len(_local) >= _LOCAL_MAX:
            _local.pop(next(iter(_local)))
        _local[_key(tenant, user_id)] = (lsn, time.monotonic() + window_s)
    safe.cache_raise_to(_key(tenant, user_id), lsn, int(window_s * 1000))


def written_lsn(tenant: TenantInfo, user_id: int) -> int | None:
    """The WAL position this user's reads must see (0: none), None if unknown."""
    key = _key(tenant, user_id)
    local = _local.get(key)
    here = local[0] if local is not None and local[1] > time.monotonic() else 0
    shared = safe.cache_get_int(key)
    if shared is None:
        return None
    return max(here, shared)
