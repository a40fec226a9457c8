"""`tenants export` / `tenants restore`: one school's snapshot, back as a new school."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError

from lms_app.accounts.models import User
from lms_app.caching.models import CacheGeneration
from lms_app.catalog.models import Category, Course, Lesson
from lms_app.db.engines import for_schema
from lms_app.extensions import db
from lms_app.learning.models import Enrollment, LessonProgress, UserActivity
from lms_app.tenancy import schema_catalog
from lms_app.tenancy.backup import export_tenant
from lms_app.tenancy.context import TenantInfo
from lms_app.tenancy.migrations import downgrade_tenant, tenant_head, tenant_revisions
from lms_app.tenancy.models import Tenant
from lms_app.tenancy.provisioning import drop_tenant
from lms_app.tenancy.registry import load_tenant
from lms_app.tenancy.snapshots import MANIFEST, NoProgress, SnapshotReader
from tests.conftest import ADMIN_PASSWORD, any_schema_of, unique_slug

# --- helpers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(app: Flask) -> Engine:
    with app.app_context():
        return db.engine


@pytest.fixture(scope="module")
def restored(app: Flask, engine: Engine):
    """Slugs restored by a test; dropped at the end of the module."""
    slugs: list[str] = []
    yield slugs
    for slug in slugs:
        if load_tenant(engine, slug) is not None:
            drop_tenant(engine, slug)


def cli(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def primary_key(conn, schema: str, table: str) -> list[str]:
    return list(
        conn.execute(
            text(
                "SELECT a.attname FROM pg_index i "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = (quote_ident(:s) || '.' || quote_ident(:t))::regclass "
                "AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)"
            ),
            {"s": schema, "t": table},
        ).scalars()
    )


def dump(engine: Engine, schema: str) -> dict[str, list[tuple]]:
    """Every row of every table of `schema` (generated columns too), by primary key."""
    out: dict[str, list[tuple]] = {}
    with engine.connect() as conn:
        names = conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = :s "
                "AND tablename <> 'alembic_version' ORDER BY 1"
            ),
            {"s": schema},
        ).scalars()
        for name in list(names):
            key = ", ".join(f'"{c}"' for c in primary_key(conn, schema, name))
            rows = conn.execute(text(f'SELECT * FROM "{schema}"."{name}" ORDER BY {key}'))
            out[name] = [tuple(r) for r in rows]
    return out


def structure(engine: Engine, schema: str) -> dict[str, set[str]]:
    """Index and constraint definitions, with the schema name taken out."""
    with engine.connect() as conn:
        indexes = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE schemaname = :s"), {"s": schema}
        ).scalars()
        constraints = conn.execute(
            text(
                "SELECT conrelid::regclass::text || ' ' || conname || ' ' || "
                "pg_get_constraintdef(oid) FROM pg_constraint k "
                "WHERE connamespace = (SELECT oid FROM pg_namespace WHERE nspname = :s)"
            ),
            {"s": schema},
        ).scalars()
        return {
            "indexes": {d.replace(schema, "S") for d in indexes},
            "constraints": {d.replace(schema, "S") for d in constraints},
        }


def revision(engine: Engine, schema: str) -> str | None:
    with engine.connect() as conn:
        return tenant_revisions(conn, [schema])[schema]


def fill(engine: Engine, tenant: TenantInfo, tag: str = "") -> dict[str, Any]:
    """A little of everything, with values that stress the format: NULLs, tabs,
    newlines, backslashes, quotes, non-ASCII, microsecond timestamps."""
    at = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    with for_schema(engine, tenant.schema_name).begin() as conn:
        student = conn.execute(
            insert(User)
            .values(
                email=f"élève{tag}@example.test",
                name='Zoë "Q" \\ Tab\there\nnewline',
                role="student",
                password_hash=None,
            )
            .returning(User.id)
        ).scalar_one()
        category = conn.execute(
            insert(Category).values(name="Ünïcode ✓", slug=f"cat{tag}").returning(Category.id)
        ).scalar_one()
        course = conn.execute(
            insert(Course)
            .values(
                title=f"Algebra {tag}",
                description="x\ty\nz\\",
                category_id=category,
                estimated_hours=None,
                is_published=True,
                total_lessons=2,
            )
            .returning(Course.id)
        ).scalar_one()
        lessons = conn.execute(
            insert(Lesson)
            .values(
                [
                    {"course_id": course, "title": "One", "content": "∑ a_i", "order_index": 0},
                    {"course_id": course, "title": "Two", "content": "", "order_index": 1},
                ]
            )
            .returning(Lesson.id)
        ).scalars()
        lessons = list(lessons)
        conn.execute(insert(Enrollment).values(user_id=student, course_id=course))
        conn.execute(
            insert(LessonProgress).values(
                [
                    {
                        "user_id": student,
                        "lesson_id": lessons[0],
                        "course_id": course,
                        "progress_percentage": 100,
                        "time_spent": 2**40,
                        "completed_at": at,
                    },
                    {
                        "user_id": student,
                        "lesson_id": lessons[1],
                        "course_id": course,
                        "progress_percentage": 30,
                        "time_spent": 0,
                        "completed_at": None,
                    },
                ]
            )
        )
        conn.execute(
            insert(UserActivity).values(user_id=student, activity_type="login", occurred_at=at)
        )
        conn.execute(insert(CacheGeneration).values(namespace=f"catalog{tag}", generation=7))
    return {"student": student, "course": course, "lessons": lessons}


@dataclass
class Scenario:
    source: TenantInfo
    copy: TenantInfo
    snapshot: dict[str, list[tuple]]
    # The copy as restored, before any test uses it (logging in may write to it).
    restored: dict[str, list[tuple]]
    export_output: str
    restore_output: str


@pytest.fixture(scope="module")
def scenario(app: Flask, engine: Engine, make_tenant, restored, tmp_path_factory) -> Scenario:
    """A school exported, then changed; the file restored under a new slug."""
    source = make_tenant()
    first = fill(engine, source, "a")
    fill(engine, source, "b")
    snapshot = dump(engine, source.schema_name)
    path = tmp_path_factory.mktemp("snap") / "school.lms.zip"
    exported = cli(app, "tenants", "export", source.slug, str(path))
    assert exported.exit_code == 0, exported.output

    # The live school moves on: rows added, removed and updated.
    fill(engine, source, "c")
    with for_schema(engine, source.schema_name).begin() as conn:
        conn.execute(delete(LessonProgress).where(LessonProgress.lesson_id == first["lessons"][1]))
        conn.execute(update(Course).where(Course.id == first["course"]).values(title="Renamed"))
        conn.execute(update(User).where(User.id == first["student"]).values(name="Changed"))

    slug = unique_slug("copy")
    restored.append(slug)
    result = cli(app, "tenants", "restore", str(path), "--as", slug)
    assert result.exit_code == 0, result.output
    copy = load_tenant(engine, slug)
    assert copy is not None
    restored_rows = dump(engine, copy.schema_name)
    return Scenario(source, copy, snapshot, restored_rows, exported.output, result.output)


# --- a snapshot comes back row for row ---------------------------------------------------


def test_restored_school_equals_the_snapshot(engine: Engine, scenario: Scenario) -> None:
    restored_rows = scenario.restored
    assert set(restored_rows) == set(scenario.snapshot)
    assert {"users", "courses", "lessons", "lesson_progress", "cache_generations"} <= set(
        restored_rows
    )
    for table, rows in scenario.snapshot.items():
        assert restored_rows[table] == rows, table
    # Generated columns were computed again from the restored text.
    with for_schema(engine, scenario.copy.schema_name).connect() as conn:
        vectors = conn.execute(select(Course.search_vector)).scalars().all()
    assert len(vectors) == 2 and all(vectors)


def test_live_school_keeps_its_changes(engine: Engine, scenario: Scenario) -> None:
    live = dump(engine, scenario.source.schema_name)
    assert live != scenario.snapshot
    assert len(live["courses"]) == len(scenario.snapshot["courses"]) + 1
    assert "Renamed" in {row[1] for row in live["courses"]}
    assert "Renamed" not in {row[1] for row in dump(engine, scenario.copy.schema_name)["courses"]}
    assert len(live["lesson_progress"]) == len(scenario.snapshot["lesson_progress"]) + 1


def test_restored_school_is_a_complete_new_tenant(engine: Engine, scenario: Scenario) -> None:
    copy, source = scenario.copy, scenario.source
    assert copy.schema_name == f"t{copy.id}_{copy.slug}" != source.schema_name
    assert (copy.name, copy.status) == (source.name, "active")
    assert revision(engine, copy.schema_name) == tenant_head()
    # Every index and constraint, rebuilt after the load, is as the migrations made it.
    assert structure(engine, copy.schema_name) == structure(engine, source.schema_name)
    with engine.connect() as conn:
        invalid = conn.execute(
            text(
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND NOT i.indisvalid"
            ),
            {"s": copy.schema_name},
        ).scalar_one()
    assert invalid == 0
    # Identity sequences continue past the restored ids.
    with for_schema(engine, copy.schema_name).begin() as conn:
        largest = conn.execute(select(func.max(User.id))).scalar_one()
        new_id = conn.execute(
            insert(User)
            .values(email="later@example.test", name="Later", role="student")
            .returning(User.id)
        ).scalar_one()
        conn.execute(delete(User).where(User.id == new_id))
    assert new_id > largest


def test_cli_reports_what_it_did(scenario: Scenario) -> None:
    assert f"exported {scenario.source.slug} at revision {tenant_head()}" in scenario.export_output
    assert f"as {scenario.copy.slug} (schema {scenario.copy.schema_name}" in (
        scenario.restore_output
    )
    for step in ("tables", "rows", "indexes and keys", "to head and analyze"):
        assert f"{step} " in scenario.restore_output


def test_restored_school_works_through_the_api(app: Flask, scenario: Scenario) -> None:
    client = app.test_client()
    headers = {"X-Tenant": scenario.copy.slug}
    login = client.post(
        "/api/v1/auth/token",
        json={"email": f"admin@{scenario.source.slug}.test", "password": ADMIN_PASSWORD},
        headers=headers,
    )
    assert login.status_code == 200, login.get_json()
    headers["Authorization"] = f"Bearer {login.get_json()['access_token']}"
    page = client.get("/api/v1/courses?limit=100", headers=headers)
    assert page.status_code == 200, page.get_json()
    titles = sorted(item["title"] for item in page.get_json()["items"])
    assert titles == ["Algebra a", "Algebra b"]  # as exported, not "Renamed", no "c"
    # A token of the live school does not open the copy.
    live_login = client.post(
        "/api/v1/auth/token",
        json={"email": f"admin@{scenario.source.slug}.test", "password": ADMIN_PASSWORD},
        headers={"X-Tenant": scenario.source.slug},
    )
    live_token = live_login.get_json()["access_token"]
    crossed = client.get(
        "/api/v1/courses",
        headers={"X-Tenant": scenario.copy.slug, "Authorization": f"Bearer {live_token}"},
    )
    assert crossed.status_code == 401


def test_manifest_describes_the_snapshot(
    app: Flask, engine: Engine, make_tenant, tmp_path: Path
) -> None:
    source = make_tenant()
    fill(engine, source)
    path = tmp_path / "s.zip"
    with app.app_context():
        report = export_tenant(db.engine, source.slug, path)
    with SnapshotReader(path) as reader:
        manifest = reader.manifest
    assert (manifest.slug, manifest.name, manifest.source_schema) == (
        source.slug,
        source.name,
        source.schema_name,
    )
    assert manifest.revision == tenant_head()
    names = [t.name for t in manifest.tables]
    # Parents before the tables that refer to them; no version table (it is `revision`).
    assert names.index("users") < names.index("courses") < names.index("lessons")
    assert names.index("lessons") < names.index("lesson_progress")
    assert "alembic_version" not in names
    by_name = {t.name: t for t in manifest.tables}
    assert by_name["lesson_progress"].rows == 2 and by_name["users"].rows == 2
    assert "search_vector" not in [c.name for c in by_name["courses"].columns]
    assert by_name["users"].sequences == {"id": 2}
    assert report.rows == sum(t.rows for t in manifest.tables)
    assert not list(tmp_path.glob(".*partial*"))


# --- an older snapshot is migrated to head -------------------------------------------------


def test_older_revision_snapshot_is_migrated_to_head(
    app: Flask, engine: Engine, make_tenant, restored, tmp_path: Path
) -> None:
    old = make_tenant()
    with engine.connect() as conn:
        downgrade_tenant(conn, old.schema_name, "0003")
        conn.commit()
    assert revision(engine, old.schema_name) == "0003"
    with for_schema(engine, old.schema_name).begin() as conn:
        # At 0003 courses have no `version` and there is no cache_generations table.
        conn.execute(
            text(
                f'INSERT INTO "{old.schema_name}".courses (title, is_published) '
                "VALUES ('Old course', true)"
            )
        )
    snapshot = dump(engine, old.schema_name)
    path = tmp_path / "old.zip"
    assert cli(app, "tenants", "export", old.slug, str(path)).exit_code == 0
    with SnapshotReader(path) as reader:
        assert reader.manifest.revision == "0003"

    slug = unique_slug("older")
    restored.append(slug)
    result = cli(app, "tenants", "restore", str(path), "--as", slug, "--name", "Old copy")
    assert result.exit_code == 0, result.output
    copy = load_tenant(engine, slug)
    assert copy is not None and copy.name == "Old copy"
    assert revision(engine, copy.schema_name) == tenant_head()
    rows = dump(engine, copy.schema_name)
    assert rows["cache_generations"] == []
    # Columns added after 0003 (by ADD COLUMN) come last: the snapshot's are a prefix.
    assert len(rows["users"]) == len(snapshot["users"]) == 1
    pairs = zip(rows["users"], snapshot["users"], strict=True)
    assert [row[: len(before)] for row, before in pairs] == snapshot["users"]
    # The course, with 0005's new column at its default.
    with for_schema(engine, copy.schema_name).connect() as conn:
        course = conn.execute(select(Course.title, Course.version)).one()
    assert tuple(course) == ("Old course", 1)


def test_restore_only_inserts_so_append_only_tables_load(
    app: Flask, engine: Engine, good_snapshot: Path, restored, monkeypatch
) -> None:
    """Tables whose triggers refuse UPDATE, DELETE and TRUNCATE (an append-only audit
    trail) load like any other: the restore only ever adds rows."""
    set_aside = schema_catalog.load_accelerators

    def append_only_first(conn, schema: str):
        q = f'"{schema}"'
        conn.exec_driver_sql(
            f"CREATE FUNCTION {q}.refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'append-only: %% refused', TG_OP; END $$"
        )
        for table_name in ("user_activity", "lesson_progress"):
            conn.exec_driver_sql(
                f'CREATE TRIGGER refuse_rows BEFORE UPDATE OR DELETE ON {q}."{table_name}" '
                f"FOR EACH ROW EXECUTE FUNCTION {q}.refuse()"
            )
            conn.exec_driver_sql(
                f'CREATE TRIGGER refuse_truncate BEFORE TRUNCATE ON {q}."{table_name}" '
                f"FOR EACH STATEMENT EXECUTE FUNCTION {q}.refuse()"
            )
        return set_aside(conn, schema)

    monkeypatch.setattr(schema_catalog, "load_accelerators", append_only_first)
    slug = unique_slug("append")
    restored.append(slug)
    result = cli(app, "tenants", "restore", str(good_snapshot), "--as", slug)
    assert result.exit_code == 0, result.output
    copy = load_tenant(engine, slug)
    assert copy is not None
    with SnapshotReader(good_snapshot) as reader:
        source_schema = reader.manifest.source_schema
    source_rows, copy_rows = dump(engine, source_schema), dump(engine, copy.schema_name)
    assert copy_rows["user_activity"] == source_rows["user_activity"] != []
    assert copy_rows["lesson_progress"] == source_rows["lesson_progress"] != []
    # The triggers were there all along, and still refuse.
    refused = pytest.raises(DBAPIError, match="append-only: DELETE refused")
    with refused, engine.begin() as conn:
        conn.execute(text(f'DELETE FROM "{copy.schema_name}".user_activity'))


# --- failures leave nothing behind ----------------------------------------------------------


def tenant_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Tenant)).scalar_one()


@pytest.fixture(scope="module")
def good_snapshot(app: Flask, engine: Engine, make_tenant, tmp_path_factory) -> Path:
    source = make_tenant()
    fill(engine, source)
    path = tmp_path_factory.mktemp("good") / "good.zip"
    with app.app_context():
        export_tenant(db.engine, source.slug, path)
    return path


def damage_member(path: Path, member: str) -> None:
    """Flip bytes in the middle of one member's compressed data."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = bytearray(path.read_bytes())
    start = info.header_offset
    name_len = int.from_bytes(raw[start + 26 : start + 28], "little")
    extra_len = int.from_bytes(raw[start + 28 : start + 30], "little")
    data = start + 30 + name_len + extra_len
    for i in range(data + 2, data + max(3, info.compress_size - 2)):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))


def rewrite_manifest(path: Path, change: Callable[[dict], None]) -> None:
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(members[MANIFEST])
    change(manifest)
    members[MANIFEST] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _set(key: str, value: Any) -> Callable[[dict], None]:
    return lambda m: m.__setitem__(key, value)


def _miscount(m: dict) -> None:
    next(t for t in m["tables"] if t["name"] == "lesson_progress")["rows"] += 1


def _drop_column(m: dict) -> None:
    next(t for t in m["tables"] if t["name"] == "users")["columns"].pop()


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "not a zip": (lambda p: p.write_bytes(b"PK\x03\x04 not really" * 100), "not a readable"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "readable"),
    "damaged rows": (lambda p: damage_member(p, "tables/lesson_progress.copy"), "damaged"),
    "unknown revision": (lambda p: rewrite_manifest(p, _set("revision", "9999")), "9999"),
    "other format": (lambda p: rewrite_manifest(p, _set("format_version", 99)), "version 99"),
    "not a snapshot": (lambda p: rewrite_manifest(p, _set("format", "x")), "not an lms_app"),
    "row count": (lambda p: rewrite_manifest(p, _miscount), "manifest says"),
    "columns": (lambda p: rewrite_manifest(p, _drop_column), "columns of users"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_snapshot_fails_cleanly(
    app: Flask, engine: Engine, good_snapshot: Path, tmp_path: Path, kind: str
) -> None:
    damage, message = CORRUPTIONS[kind]
    path = tmp_path / "bad.zip"
    path.write_bytes(good_snapshot.read_bytes())
    damage(path)
    before = tenant_rows(engine)
    slug = unique_slug("bad")
    result = cli(app, "tenants", "restore", str(path), "--as", slug)
    assert result.exit_code != 0
    assert "cannot restore" in result.output and message in result.output, result.output
    assert "Traceback" not in result.output
    assert load_tenant(engine, slug) is None
    assert not any_schema_of(engine, slug)
    assert tenant_rows(engine) == before


def test_snapshot_with_duplicate_keys_fails_cleanly(
    app: Flask, engine: Engine, good_snapshot: Path, tmp_path: Path
) -> None:
    """Rows that pass the CRC but break a key (the keys are rebuilt after the load)."""
    with SnapshotReader(good_snapshot) as reader:
        users = next(t for t in reader.manifest.tables if t.name == "users")
        source_schema = reader.manifest.source_schema
    columns = ", ".join(f'"{c.name}"' for c in users.columns)
    doubled = io.BytesIO()
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.copy_expert(
                f'COPY (SELECT {columns} FROM "{source_schema}".users UNION ALL '
                f'SELECT {columns} FROM "{source_schema}".users) TO STDOUT (FORMAT binary)',
                doubled,
            )
        raw.rollback()
    finally:
        raw.close()
    path = tmp_path / "dup.zip"
    path.write_bytes(good_snapshot.read_bytes())
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members[users.member] = doubled.getvalue()
    manifest = json.loads(members[MANIFEST])
    next(t for t in manifest["tables"] if t["name"] == "users")["rows"] = users.rows * 2
    members[MANIFEST] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)

    before = tenant_rows(engine)
    slug = unique_slug("dup")
    result = cli(app, "tenants", "restore", str(path), "--as", slug)
    assert result.exit_code != 0
    assert "cannot restore" in result.output and "break" in result.output, result.output
    assert "@" not in result.output  # names the key, never the rows' values
    assert load_tenant(engine, slug) is None
    assert not any_schema_of(engine, slug)
    assert tenant_rows(engine) == before


def test_restore_onto_a_taken_slug_changes_nothing(
    app: Flask, engine: Engine, make_tenant, good_snapshot: Path
) -> None:
    taken = make_tenant()
    before = dump(engine, taken.schema_name)
    tenants_before = tenant_rows(engine)
    result = cli(app, "tenants", "restore", str(good_snapshot), "--as", taken.slug)
    assert result.exit_code != 0
    assert f"tenant already exists: {taken.slug}" in result.output
    assert tenant_rows(engine) == tenants_before
    assert load_tenant(engine, taken.slug) == taken
    assert dump(engine, taken.schema_name) == before
    with engine.connect() as conn:
        schemas = conn.execute(
            text("SELECT count(*) FROM pg_namespace WHERE nspname ~ :p"),
            {"p": rf"^t\d+_{taken.slug}$"},
        ).scalar_one()
    assert schemas == 1


@pytest.mark.parametrize("slug", ["Bad-Slug", "public", "x"])
def test_restore_with_a_bad_slug_fails_clearly(
    app: Flask, engine: Engine, good_snapshot: Path, slug: str
) -> None:
    before = tenant_rows(engine)
    result = cli(app, "tenants", "restore", str(good_snapshot), "--as", slug)
    assert result.exit_code != 0
    assert "slug" in result.output
    assert tenant_rows(engine) == before


def test_export_of_an_unknown_school_fails(app: Flask, tmp_path: Path) -> None:
    path = tmp_path / "none.zip"
    result = cli(app, "tenants", "export", "no_such_school", str(path))
    assert result.exit_code != 0
    assert "no tenant 'no_such_school'" in result.output
    assert not path.exists()
    assert not list(tmp_path.iterdir())


def test_export_into_a_missing_directory_fails_clearly(
    app: Flask, make_tenant, tmp_path: Path
) -> None:
    source = make_tenant()
    path = tmp_path / "absent" / "s.zip"
    result = cli(app, "tenants", "export", source.slug, str(path))
    assert result.exit_code != 0
    assert f"cannot write {path}" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "absent").exists()


# --- consistency under concurrent writes ---------------------------------------------------


class SlowProgress(NoProgress):
    """Holds the export between blocks, so writers commit while it runs."""

    def advance(self, amount: int) -> None:
        time.sleep(0.1)


def test_export_is_consistent_under_concurrent_writes(
    app: Flask, engine: Engine, make_tenant, restored, tmp_path: Path
) -> None:
    """Each writer transaction adds one activity row and moves a counter: in any
    consistent snapshot the two agree, although the tables are read one by one
    (cache_generations, the counter, before user_activity)."""
    source = make_tenant()
    user_id = fill(engine, source)["student"]
    view = for_schema(engine, source.schema_name)
    stop = threading.Event()
    commits: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            write()
        except BaseException as exc:  # seen by the test, not lost in the thread
            errors.append(exc)

    def write() -> None:
        while not stop.is_set():
            with view.begin() as conn:
                conn.execute(insert(UserActivity).values(user_id=user_id, activity_type="tick"))
                conn.execute(
                    pg_insert(CacheGeneration)
                    .values(namespace="ticks", generation=1)
                    .on_conflict_do_update(
                        index_elements=[CacheGeneration.namespace],
                        set_={"generation": CacheGeneration.generation + 1},
                    )
                )
            commits.append(1)

    path = tmp_path / "busy.zip"
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not commits and not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert commits and not errors, errors
        during = len(commits)
        with app.app_context():
            export_tenant(db.engine, source.slug, path, SlowProgress())
        after = len(commits)
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors
    assert after - during >= 3, "no writes happened while the export ran"

    slug = unique_slug("busy")
    restored.append(slug)
    assert cli(app, "tenants", "restore", str(path), "--as", slug).exit_code == 0
    copy = load_tenant(engine, slug)
    assert copy is not None
    with for_schema(engine, copy.schema_name).connect() as conn:
        ticks = conn.execute(
            select(func.count()).where(UserActivity.activity_type == "tick")
        ).scalar_one()
        counter = conn.execute(
            select(CacheGeneration.generation).where(CacheGeneration.namespace == "ticks")
        ).scalar_one()
    assert ticks == counter >= during
    with for_schema(engine, source.schema_name).connect() as conn:
        live_ticks = conn.execute(
            select(func.count()).where(UserActivity.activity_type == "tick")
        ).scalar_one()
    assert live_ticks > ticks
