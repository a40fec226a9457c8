"""Generation counters: O(1) invalidation of a whole namespace of a tenant.

Every cached value of a namespace carries the namespace's generation in its key; a
write moves the generation and the old keys are never read again (they expire on
their TTL). No KEYS or SCAN, whatever the number of keys.

The counters live in PostgreSQL (`cache_generations`, one row per namespace in each
tenant schema) and a write moves them *inside its own transaction*: the
invalidation commits, or rolls back, with the change it announces. A counter kept in
the shared cache could miss its INCR while the cache is unreachable, and every other
process would then serve what the write replaced until the entry's TTL.

Each process reads a tenant's counters in one statement and keeps that snapshot for
`CACHE_LOCAL_SECONDS`: a committed write is seen by every later read in every
process within that time, whatever happens to the shared cache, and the process that
made the write drops its snapshot at commit, so it reads its own write at once.
A reader takes the generation *before* it reads the database, so a fill that raced
with a write is stored under the old generation and dies with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping

from flask import Flask, current_app
from sqlalchemy import event, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from lms_app.caching.keys import tenant_scope_key
from lms_app.caching.models import CacheGeneration
from lms_app.db.engines import for_schema
from lms_app.db.prepared import prepare
from lms_app.db.routing import primary_reads
from lms_app.tenancy.context import TenantInfo, require_tenant

# The namespaces of DESIGN.md's caching section. Per-user learning data (progress,
# enrolments) has none: it is always read live.
CATALOG = "catalog"  # catalog pages
COURSE = "course"  # course detail: course, category, instructor, lesson outline
LESSON = "lesson"  # lesson content and what decides who may see it
SEARCH = "search"  # search results per normalised query
CATEGORIES = "categories"  # category pages
ANALYTICS = "analytics"  # course analytics
AUTH = "auth"  # users' role, active flag and token version
ALL = (CATALOG, COURSE, LESSON, SEARCH, CATEGORIES, ANALYTICS, AUTH)

# Session.info key: the tenants whose generations this transaction moved.
_BUMPED = "lms_generations_bumped"
_SNAPSHOT = prepare(select(CacheGeneration.namespace, CacheGeneration.generation), "generations")
_GENERATION = CacheGeneration.__table__.c.generation


def bump_statement(namespaces: Iterable[str]):
    """INSERT ... ON CONFLICT that moves each namespace's row by one (locks taken in
    name order, so two writers bumping overlapping sets cannot deadlock)."""
    rows = [{"namespace": ns, "generation": 1} for ns in sorted(set(namespaces))]
    stmt = insert(CacheGeneration).values(rows)
    return stmt.on_conflict_do_update(
        index_elements=[CacheGeneration.namespace], set_={"generation": _GENERATION + 1}
    )


def bump(*namespaces: str, session: Session | None = None) -> None:
    """Retire every cached value of `namespaces` when the current transaction commits.

    Call it before the commit, as late as possible: the rows stay locked until then,
    so concurrent writers of the same namespaces queue for that short while.
    """
    from lms_app.extensions import db

    session = session or db.session
    session.execute(bump_statement(namespaces))
    session.info.setdefault(_BUMPED, set()).add(require_tenant())


def bump_committed(tenant: TenantInfo, *namespaces: str) -> None:
    """`bump` in a transaction of its own, after data was written outside a request
    (CLI seeding): readers that start afterwards see the new generation."""
    from lms_app.extensions import db

    with for_schema(db.engine, tenant.schema_name).begin() as connection:
        connection.execute(bump_statement(namespaces))
    snapshots().forget(tenant)


def current(namespace: str, tenant: TenantInfo | None = None) -> int:
    """The namespace's generation as this process knows it (at most CACHE_LOCAL_SECONDS
    old; an unknown namespace is generation 0)."""
    return snapshots().of(tenant or require_tenant()).get(namespace, 0)


class Snapshots:
    """Per tenant: the generations read last, and until when they may be used."""

    def __init__(self, max_age_s: float, max_tenants: int = 10_000) -> None:
        self.max_age_s = max_age_s
        self.max_tenants = max_tenants
        self._snapshots: dict[str, tuple[float, Mapping[str, int]]] = {}
        # A snapshot read before a forget() (another thread's commit) is not stored.
        # `_resets` is part of the token, so emptying `_epochs` cannot bring an old
        # token back.
        self._epochs: dict[str, int] = {}
        self._resets = 0
        self._lock = threading.Lock()

    def of(self, tenant: TenantInfo) -> Mapping[str, int]:
        key = tenant_scope_key(tenant)
        found = self._snapshots.get(key)
        now = time.monotonic()
        if found is not None and found[0] > now:
            return found[1]
        epoch = self._epoch(key)
        generations = self._read()
        with self._lock:
            if self._epoch(key) == epoch:
                if len(self._snapshots) >= self.max_tenants:
                    self._snapshots.clear()
                self._snapshots[key] = (now + self.max_age_s, generations)
        return generations

    def _epoch(self, key: str) -> tuple[int, int]:
        return self._resets, self._epochs.get(key, 0)

    def forget(self, tenant: TenantInfo) -> None:
        key = tenant_scope_key(tenant)
        with self._lock:
            if len(self._epochs) >= self.max_tenants:
                self._epochs.clear()
                self._resets += 1
            self._epochs[key] = self._epochs.get(key, 0) + 1
            self._snapshots.pop(key, None)

    @staticmethod
    def _read() -> Mapping[str, int]:
        from lms_app.db.reads import read

        # From the primary: generations a replica has not replayed yet would
        # let this process serve what a write just retired.
        with primary_reads():
            return {row.namespace: row.generation for row in read(_SNAPSHOT)}


def snapshots() -> Snapshots:
    return current_app.extensions["lms_cache_generations"]


def _after_commit(session: Session) -> None:
    bumped = session.info.pop(_BUMPED, None)
    if bumped:
        for tenant in bumped:
            snapshots().forget(tenant)


def _after_rollback(session: Session) -> None:
    # Nothing moved; but a snapshot read inside the transaction after its bump saw
    # generations that never were: drop it.
    bumped = session.info.pop(_BUMPED, None)
    if bumped:
        for tenant in bumped:
            snapshots().forget(tenant)


def init_app(app: Flask, max_age_s: float) -> None:
    from lms_app.db.session import TenantSession

    app.extensions["lms_cache_generations"] = Snapshots(max_age_s)
    if not event.contains(TenantSession, "after_commit", _after_commit):
        event.listen(TenantSession, "after_commit", _after_commit)
        event.listen(TenantSession, "after_rollback", _after_rollback)
