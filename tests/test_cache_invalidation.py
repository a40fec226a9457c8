"""Invalidations that fail are owed, not lost; local copies never outlive a write.

The outage tests connect to Redis as a user of their own, whose writes the server is
told to refuse (an ACL change), so reads still work while every INCR and DEL fails:
the case that could leave other processes serving what a write retired.
"""

from __future__ import annotations

import time

import pytest

from lms_app.caching.local import LocalCopies
from lms_app.caching.safe import breaker, cache_get
from tests import servers
from tests.conftest import dispose, make_app
from tests.test_catalog_api import API, make_school, new_course
from tests.test_catalog_cache import catalog, titles

BREAKER_S = 0.3


@pytest.fixture
def two_processes(database_url, redis_url, tmp_path):
    """A writer and a reader process of one deployment, without local copies, and the
    switch that makes Redis refuse their writes."""
    with servers.redis_user(redis_url) as (url, refuse_writes):
        options = {"cache_local_s": 0, "auth_local_cache_s": 0, "cache_breaker_s": BREAKER_S}
        writer = make_app(database_url, url, tmp_path / "writer", **options)
        reader = make_app(
            database_url, url, tmp_path / "reader", writer.config["CACHE_KEY_PREFIX"], **options
        )
        yield writer, reader, refuse_writes
        refuse_writes(False)
        dispose(writer, reader)


def test_a_failed_generation_bump_is_replayed(app, make_tenant, two_processes):
    writer, reader, refuse_writes = two_processes
    school = make_school(app, make_tenant())
    here, there = writer.test_client(), reader.test_client()
    owner, student = school.headers["instructor"], school.headers["student"]
    course = new_course(here, owner, is_published=True, title="Before")
    assert titles(catalog(there, student)) == ["Before"]  # now cached in Redis

    refuse_writes(True)
    r = here.patch(f"{API}/courses/{course['id']}", json={"title": "After"}, headers=owner)
    assert r.status_code == 200  # the write itself never depends on the cache
    with writer.app_context():
        assert breaker().pending  # the INCR is owed
    assert titles(catalog(here, student)) == ["After"]  # the writer never reads past it
    assert titles(catalog(there, student)) == ["Before"]  # others: until the replay

    refuse_writes(False)
    time.sleep(BREAKER_S + 0.05)
    assert titles(catalog(here, student)) == ["After"]  # replays the INCR first
    with writer.app_context():
        assert not breaker().pending
    assert titles(catalog(there, student)) == ["After"]


def test_a_failed_auth_state_bump_is_replayed(app, make_tenant, two_processes):
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

    refuse_writes(False)
    time.sleep(BREAKER_S + 0.05)
    assert here.get(f"{API}/me", headers=student).status_code == 401  # replays the INCR
    assert there.get(f"{API}/me", headers=student).status_code == 401


def test_a_copy_read_before_a_forget_is_refused():
    """Under threaded workers a request may read the old value while another thread
    commits and forgets; its late put must not bring the old value back."""
    copies = LocalCopies(ttl_s=60, max_entries=10)
    epoch, read_at = copies.epoch("g"), time.monotonic()
    copies.forget("g")  # another thread's write lands meanwhile
    copies.put("g", "page", "old", epoch=epoch, read_at=read_at)
    assert copies.get("g", "page") is None
    copies.put("g", "page", "new", epoch=copies.epoch("g"), read_at=time.monotonic())
    assert copies.get("g", "page") == "new"


def test_a_copy_expires_counted_from_its_read():
    copies = LocalCopies(ttl_s=0.2, max_entries=10)
    copies.put("g", "k", "v", epoch=copies.epoch("g"), read_at=time.monotonic() - 0.25)
    assert copies.get("g", "k") is None


def test_forgotten_groups_are_bounded():
    """Found by the review of issue 8: every user whose auth state changed left an
    epoch behind for good. Past max_entries the copies start over, refusing every value
    read before (nothing read before a forget is ever stored after it)."""
    copies = LocalCopies(ttl_s=60, max_entries=100)
    early = copies.epoch("user.0"), time.monotonic()
    for user in range(10_000):
        copies.forget(f"user.{user}")
    assert len(copies._epochs) <= 100
    copies.put("user.0", "state", "old", epoch=early[0], read_at=early[1])
    assert copies.get("user.0", "state") is None


def test_the_writer_bumps_before_it_forgets(app, client, make_tenant):
    """The order that makes the epoch check sufficient: a reader starting after the
    forget is sure to see the new generation."""
    from lms_app.caching import generations
    from lms_app.caching.local import shared_copies
    from lms_app.tenancy.context import tenant_scope

    tenant = make_tenant()
    seen: list[str] = []
    with app.app_context(), tenant_scope(tenant):
        copies = shared_copies()
        key = generations.generation_key(generations.CATALOG)
        original_forget = copies.forget

        def forget(group, item=None):
            seen.append(f"forget at generation {generations.parse_generation(cache_get(key))}")
            original_forget(group, item)

        before = generations.parse_generation(cache_get(key))
        copies.forget = forget  # type: ignore[method-assign]
        try:
            generations.bump(generations.CATALOG)
        finally:
            del copies.forget
        assert seen == [f"forget at generation {before + 1}"]
