"""Invalidations cannot be lost, and process state never outlives a write.

A write moves its namespaces' generations in its own transaction (issue 9), so an
invalidation no longer depends on the shared cache answering at that moment. The
outage tests connect to Redis as a user of their own whose writes the server is told
to refuse (an ACL change): reads still work while every SET fails, the case that used
to leave other processes serving what a write retired.

The rest pins what keeps a process's own state honest: a snapshot of the generations
read while another thread commits is not kept, process copies expire counted from
their read, and both are bounded.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from lms_app.caching import generations
from lms_app.caching.generations import CATALOG, Snapshots, bump_statement, snapshots
from lms_app.caching.keys import tenant_scope_key
from lms_app.caching.local import LocalCopies
from lms_app.caching.safe import breaker
from lms_app.db.engines import for_schema
from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo, tenant_scope
from tests import servers
from tests.conftest import another_process, dispose, make_app, watching_statements
from tests.test_catalog_api import API, make_school, new_course
from tests.test_catalog_cache import catalog, titles
from tests.test_generation_snapshots import stored_generation

BREAKER_S = 0.3


@pytest.fixture
def two_processes(database_url, redis_url, tmp_path):
    """A writer and a reader process of one deployment, the reader re-reading the
    generations for every request, and the switch that makes Redis refuse their writes."""
    with servers.redis_user(redis_url) as (url, refuse_writes):
        options = {"cache_local_s": 0, "cache_breaker_s": BREAKER_S}
        writer = make_app(database_url, url, tmp_path / "writer", **options)
        reader = make_app(
            database_url, url, tmp_path / "reader", writer.config["CACHE_KEY_PREFIX"], **options
        )
        yield writer, reader, refuse_writes
        refuse_writes(False)
        dispose(writer, reader)


def test_a_write_while_redis_refuses_writes_reaches_other_processes(
    app, make_tenant, two_processes
):
    """Formerly the generation INCR failed and was owed until a replay; now nothing is
    owed and the other process reads the new generation on its next request."""
    writer, reader, refuse_writes = two_processes
    school = make_school(app, make_tenant())
    here, there = writer.test_client(), reader.test_client()
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(here, owner, is_published=True, title="Before")
    assert titles(catalog(there, student)) == ["Before"]  # now cached in Redis

    refuse_writes(True)
    r = here.patch(f"{API}/courses/{course['id']}", json={"title": "After"}, headers=owner)
    assert r.status_code == 200  # the write itself never depends on the cache
    assert titles(catalog(here, student)) == ["After"]
    assert titles(catalog(there, student)) == ["After"]  # no replay needed
    with writer.app_context():
        assert breaker().is_open and breaker().pending == {}  # failed, owes nothing

    refuse_writes(False)
    time.sleep(BREAKER_S + 0.05)
    for client in (here, there, here):
        assert titles(catalog(client, student)) == ["After"]
    for process in (writer, reader):
        with process.app_context():
            assert not breaker().is_open  # the cache is in use again


def test_a_deactivation_while_redis_refuses_writes_reaches_other_processes(
    app, make_tenant, two_processes
):
    writer, reader, refuse_writes = two_processes
    school = make_school(app, make_tenant())
    here, there = writer.test_client(), reader.test_client()
    student = school.headers["student"]
    assert there.get(f"{API}/me", headers=student).status_code == 200  # state cached

    refuse_writes(True)
    r = here.patch(
        f"{API}/users/{school.ids['student']}",
        json={"is_active": False},
        headers=school.headers["admin"],
    )
    assert r.status_code == 200
    assert here.get(f"{API}/me", headers=student).status_code == 401  # at once here
    assert there.get(f"{API}/me", headers=student).status_code == 401  # and there

    refuse_writes(False)
    time.sleep(BREAKER_S + 0.05)
    assert here.get(f"{API}/me", headers=student).status_code == 401
    assert there.get(f"{API}/me", headers=student).status_code == 401


def _on_snapshot_read(engines, action):
    """Run `action()` once, right after the first generation snapshot SELECT that any
    of `engines` sends (through SQLAlchemy or prepared: lms_app.db.prepared)."""
    fired: list[bool] = []

    def seen(engine, statement):
        if fired or not statement.startswith("SELECT"):
            return
        if ".cache_generations.namespace" in statement:
            fired.append(True)
            action()

    return watching_statements(engines, seen, moment="after")


def test_a_snapshot_read_while_another_thread_commits_is_not_kept(app, make_tenant, tmp_path):
    """Under threaded workers a request may read the generations just before another
    thread's write commits and drops the snapshot: the late reader may use what it
    read (its request began before the write), but must not keep it for the window."""
    school = make_school(app, make_tenant())
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(app.test_client(), owner, is_published=True, title="Before")
    with another_process(app, tmp_path, cache_local_s=30) as process:
        client = process.test_client()

        def write_from_another_thread():
            def rename():
                r = process.test_client().patch(
                    f"{API}/courses/{course['id']}", json={"title": "After"}, headers=owner
                )
                assert r.status_code == 200

            thread = threading.Thread(target=rename)
            thread.start()
            thread.join(20)

        with process.app_context():
            engines = list(db.engines.values())
        with _on_snapshot_read(engines, write_from_another_thread):
            r = client.get(f"{API}/courses/{course['id']}", headers=student)
            assert r.status_code == 200
        assert stored_generation(app, school.tenant, CATALOG) >= 2  # the rename committed
        r = client.get(f"{API}/courses/{course['id']}", headers=student)
        assert r.get_json()["title"] == "After"


def _fake_tenant(i: int) -> TenantInfo:
    return TenantInfo(i, f"fake{i}", "Fake", f"t{i}_fake", "active", datetime.now(UTC))


def test_a_snapshot_read_across_a_reset_of_the_epochs_is_not_kept(app, make_tenant):
    """Snapshots bound their per-tenant epochs by starting over past `max_tenants`
    (the bound the review of issue 8 asked for). A read in flight across such a reset,
    whose tenant was forgotten meanwhile (a write committed), must still be refused:
    otherwise the process serves the pre-write generations for a whole window."""
    tenant = make_tenant()
    before = stored_generation(app, tenant, CATALOG)
    own = Snapshots(max_age_s=60, max_tenants=10)
    with app.app_context(), tenant_scope(tenant):

        def commit_a_write_and_many_forgets():
            with for_schema(db.engine, tenant.schema_name).begin() as conn:
                conn.execute(bump_statement([CATALOG]))
            own.forget(tenant)  # what the write's commit does in this process
            for i in range(10):  # other schools' writes meanwhile: the epochs start over
                own.forget(_fake_tenant(10_000 + i))

        with _on_snapshot_read([db.engine], commit_a_write_and_many_forgets):
            own.of(tenant)  # read before the write committed
        db.session.rollback()
        assert len(own._epochs) <= 10
        assert own.of(tenant).get(CATALOG, 0) == before + 1, "a pre-write snapshot was kept"


def test_the_writer_drops_its_snapshot_only_once_it_commits(app, make_tenant, tmp_path):
    """Before the commit other requests of the process keep using the snapshot (the
    write is not visible yet); at commit it is dropped, so the next read sees it."""
    tenant = make_tenant()
    with (
        another_process(app, tmp_path, cache_local_s=30) as process,
        process.app_context(),
        tenant_scope(tenant),
    ):
        seen = generations.current(CATALOG)
        key = tenant_scope_key(tenant)
        generations.bump(CATALOG)
        assert key in snapshots()._snapshots
        assert generations.current(CATALOG) == seen
        db.session.commit()
        assert key not in snapshots()._snapshots
        assert generations.current(CATALOG) == seen + 1


def test_a_copy_expires_counted_from_its_read():
    copies = LocalCopies(max_entries=10)
    copies.put("t1:catalog:g0:k", "v", ttl_s=0.2, read_at=time.monotonic() - 0.25)
    assert copies.get("t1:catalog:g0:k") is None
    copies.put("t1:catalog:g0:k", "v", ttl_s=60, read_at=time.monotonic())
    assert copies.get("t1:catalog:g0:k") == "v"


def test_a_value_not_to_keep_is_returned_but_not_copied():
    copies = LocalCopies(max_entries=10)
    assert copies.get_or_read("k", lambda: "big", ttl_s=60, keep=lambda _: False) == (
        "big",
        False,
    )
    assert copies.get("k") is None
    assert copies.get_or_read("k", lambda: None, ttl_s=60) == (None, False)
    assert copies.get("k") is None
    assert copies.get_or_read("k", lambda: "v", ttl_s=60) == ("v", False)
    assert copies.get_or_read("k", lambda: "other", ttl_s=60) == ("v", True)


def test_process_copies_are_a_bounded_lru():
    """Found by the review of issue 8: per-process state grew with every key. Copies are
    now at most max_entries, the least recently used going first."""
    copies = LocalCopies(max_entries=3)
    for key in "abc":
        copies.put(key, key.upper(), ttl_s=60, read_at=time.monotonic())
    assert copies.get("a") == "A"  # now the most recently used
    copies.put("d", "D", ttl_s=60, read_at=time.monotonic())
    assert [copies.get(key) for key in "abcd"] == ["A", None, "C", "D"]
    for i in range(1000):
        copies.put(f"k{i}", i, ttl_s=60, read_at=time.monotonic())
    assert len(copies._entries) == 3


def test_snapshots_are_bounded_per_process(app, make_tenant):
    """One snapshot and one epoch per school at most, and at most max_tenants of each."""
    tenant = make_tenant()
    own = Snapshots(max_age_s=60, max_tenants=50)
    with app.app_context(), tenant_scope(tenant):
        for i in range(120):
            own.of(_fake_tenant(i))  # (read from `tenant`'s schema: only the key matters)
        db.session.rollback()
    assert 0 < len(own._snapshots) <= 50
    for i in range(1000):
        own.forget(_fake_tenant(i))
    assert len(own._epochs) <= 50
