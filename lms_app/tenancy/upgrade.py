"""`db-upgrade`: the public registry, then every tenant schema, in parallel processes.

Alembic's `op`/`context` are module-level proxies, so parallel migrations need
processes, not threads. Tenants already at head are found with one query over
all version tables and never touched, so a no-op release costs seconds.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from lms_app.tenancy.migrations import migrate_tenant, tenant_head, tenant_revisions, upgrade_public
from lms_app.tenancy.provisioning import list_tenants


@dataclass
class UpgradeReport:
    head: str
    total: int = 0
    skipped: int = 0
    upgraded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


_worker_engine: Engine | None = None


def _init_worker(database_url: str) -> None:
    global _worker_engine
    # One short-lived connection per tenant: a pool would only hold idle backends.
    _worker_engine = create_engine(database_url, poolclass=NullPool, hide_parameters=True)


def _upgrade_one(slug: str, schema: str) -> tuple[str, str | None]:
    assert _worker_engine is not None
    try:
        with _worker_engine.connect() as conn:
            migrate_tenant(conn, schema)
            conn.commit()
    except Exception as exc:  # reported by name; the other tenants go on
        return slug, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return slug, None


def pending_tenants(engine: Engine) -> tuple[list[tuple[str, str]], int]:
    """(slug, schema) of tenants not at head, and how many tenants exist."""
    tenants = list_tenants(engine)
    head = tenant_head()
    with engine.connect() as conn:
        revisions = tenant_revisions(conn, [t.schema_name for t in tenants])
    pending = [(t.slug, t.schema_name) for t in tenants if revisions[t.schema_name] != head]
    return pending, len(tenants)


def upgrade_all(
    engine: Engine,
    database_url: str,
    jobs: int = 2,
    on_progress: Callable[[str, str | None], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> UpgradeReport:
    started = time.perf_counter()
    upgrade_public(engine)
    pending, total = pending_tenants(engine)
    report = UpgradeReport(head=tenant_head(), total=total, skipped=total - len(pending))
    if on_start:
        on_start(len(pending))
    if pending:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=max(1, min(jobs, len(pending))),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(database_url,),
        ) as pool:
            futures = [pool.submit(_upgrade_one, slug, schema) for slug, schema in pending]
            for future in as_completed(futures):
                slug, error = future.result()
                if error is None:
                    report.upgraded.append(slug)
                else:
                    report.failed[slug] = error
                if on_progress:
                    on_progress(slug, error)
    report.seconds = time.perf_counter() - started
    return report
