"""Per-tenant Alembic: the index set, models == migrations, upgrading every tenant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import Connection, Engine, text

import lms_app.models  # noqa: F401  (fills TenantBase.metadata)
from lms_app.db.base import TENANT_SCHEMA_PLACEHOLDER, PublicBase, TenantBase
from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo
from lms_app.tenancy.migrations import downgrade_tenant, tenant_head, tenant_revisions
from lms_app.tenancy.provisioning import NewTenant, create_tenant
from lms_app.tenancy.slugs import schema_for
from lms_app.tenancy.upgrade import pending_tenants, upgrade_all
from tests import servers
from tests.conftest import ADMIN_PASSWORD, make_app, unique_slug, worker_id

# Indexes behind primary keys and unique constraints (revision 0001) and the
# version table's key.
CONSTRAINT_INDEXES = {
    "alembic_version_pkc": "UNIQUE INDEX alembic_version_pkc ON S.alembic_version "
    "USING btree (version_num)",
    "pk_users": "UNIQUE INDEX pk_users ON S.users USING btree (id)",
    "uq_users_email": "UNIQUE INDEX uq_users_email ON S.users USING btree (email)",
    "pk_categories": "UNIQUE INDEX pk_categories ON S.categories USING btree (id)",
    "uq_categories_slug": "UNIQUE INDEX uq_categories_slug ON S.categories USING btree (slug)",
    "pk_courses": "UNIQUE INDEX pk_courses ON S.courses USING btree (id)",
    "pk_lessons": "UNIQUE INDEX pk_lessons ON S.lessons USING btree (id)",
    "pk_enrollments": "UNIQUE INDEX pk_enrollments ON S.enrollments USING btree (id)",
    "uq_enrollments_user_id_course_id": "UNIQUE INDEX uq_enrollments_user_id_course_id "
    "ON S.enrollments USING btree (user_id, course_id)",
    "pk_lesson_progress": "UNIQUE INDEX pk_lesson_progress ON S.lesson_progress USING btree (id)",
    "uq_lesson_progress_user_id_lesson_id": "UNIQUE INDEX uq_lesson_progress_user_id_lesson_id "
    "ON S.lesson_progress USING btree (user_id, lesson_id)",
    "pk_user_activity": "UNIQUE INDEX pk_user_activity ON S.user_activity USING btree (id)",
}

# Revision 0002: the seed's indexes made valid, plus what the API's reads need.
SECONDARY_INDEXES = {
    "ix_users_role": "INDEX ix_users_role ON S.users USING btree (role, created_at, id)",
    "ix_users_active": "INDEX ix_users_active ON S.users USING btree (created_at, id) "
    "WHERE is_active",
    "ix_courses_published": "INDEX ix_courses_published ON S.courses "
    "USING btree (is_published, created_at) WHERE is_published",
    "ix_courses_active_recent": "INDEX ix_courses_active_recent ON S.courses "
    "USING btree (created_at DESC, id DESC) WHERE (is_published AND (NOT is_archived))",
    "ix_courses_difficulty": "INDEX ix_courses_difficulty ON S.courses "
    "USING btree (difficulty_level, created_at, id)",
    "ix_courses_category": "INDEX ix_courses_category ON S.courses "
    "USING btree (category_id, created_at, id)",
    "ix_courses_instructor": "INDEX ix_courses_instructor ON S.courses "
    "USING btree (instructor_id, created_at, id)",
    "ix_courses_search": "INDEX ix_courses_search ON S.courses USING gin (search_vector)",
    "ix_lessons_course": "INDEX ix_lessons_course ON S.lessons "
    "USING btree (course_id, order_index)",
    "ix_lessons_search": "INDEX ix_lessons_search ON S.lessons USING gin (search_vector)",
    "ix_enrollments_user": "INDEX ix_enrollments_user ON S.enrollments "
    "USING btree (user_id, enrolled_at)",
    "ix_enrollments_course": (
        "INDEX ix_enrollments_course ON S.enrollments USING btree "
        "(course_id, enrolled_at DESC, id DESC)"
    ),
    "ix_enrollments_active": "INDEX ix_enrollments_active ON S.enrollments "
    "USING btree (course_id, user_id, enrolled_at) WHERE ((status)::text = 'active'::text)",
    "ix_lesson_progress_user_course": "INDEX ix_lesson_progress_user_course ON S.lesson_progress "
    "USING btree (user_id, course_id)",
    "ix_lesson_progress_lesson": "INDEX ix_lesson_progress_lesson ON S.lesson_progress "
    "USING btree (lesson_id)",
    "ix_lesson_progress_course": "INDEX ix_lesson_progress_course ON S.lesson_progress "
    "USING btree (course_id, user_id)",
    "ix_lesson_progress_completed": "INDEX ix_lesson_progress_completed ON S.lesson_progress "
    "USING btree (completed_at) WHERE (completed_at IS NOT NULL)",
    "ix_lesson_progress_percentage": "INDEX ix_lesson_progress_percentage ON S.lesson_progress "
    "USING btree (progress_percentage)",
    "ix_lesson_progress_user_status": "INDEX ix_lesson_progress_user_status ON S.lesson_progress "
    "USING btree (user_id, progress_percentage) WHERE (progress_percentage = 100)",
    "ix_lesson_progress_completed_analytics": "INDEX ix_lesson_progress_completed_analytics "
    "ON S.lesson_progress USING btree (user_id, course_id, completed_at) "
    "WHERE (progress_percentage = 100)",
    "ix_user_activity_user_time": "INDEX ix_user_activity_user_time ON S.user_activity "
    "USING btree (user_id, occurred_at)",
    "ix_user_activity_time_brin": "INDEX ix_user_activity_time_brin ON S.user_activity "
    "USING brin (occurred_at)",
}

# Revision 0003: the catalog page's unpublished lesson ids.
SECONDARY_INDEXES["ix_lessons_unpublished"] = (
    "INDEX ix_lessons_unpublished ON S.lessons USING btree (course_id) WHERE (NOT is_published)"
)

# Revision 0004: the cache generation counters' table (not there at 0001).
GENERATION_INDEXES = {
    "pk_cache_generations": "UNIQUE INDEX pk_cache_generations ON S.cache_generations "
    "USING btree (namespace)"
}

# Revision 0006: the audit trail, newest first with or without one filter.
AUDIT_INDEXES = {
    "pk_audit_events": "UNIQUE INDEX pk_audit_events ON S.audit_events USING btree (id)",
    "ix_audit_events_created": "INDEX ix_audit_events_created ON S.audit_events "
    "USING btree (created_at, id)",
    "ix_audit_events_actor": "INDEX ix_audit_events_actor ON S.audit_events "
    "USING btree (actor_id, created_at, id)",
    "ix_audit_events_action": "INDEX ix_audit_events_action ON S.audit_events "
    "USING btree (action, created_at, id)",
    "ix_audit_events_target": "INDEX ix_audit_events_target ON S.audit_events "
    "USING btree (target_type, target_id, created_at, id)",
}

ALL_INDEXES = {**CONSTRAINT_INDEXES, **SECONDARY_INDEXES, **GENERATION_INDEXES, **AUDIT_INDEXES}


# --- catalog helpers -------------------------------------------------------------------


def _normalise(value: str | None, schema: str) -> str | None:
    return None if value is None else value.replace(f"{schema}.", "S.")


def index_defs(conn: Connection, schema: str) -> dict[str, str]:
    """name -> definition (without CREATE, schema replaced by S) of every index in schema."""
    rows = conn.execute(
        text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s"), {"s": schema}
    )
    return {name: _normalise(d, schema).removeprefix("CREATE ") for name, d in rows}


def invalid_indexes(conn: Connection, schema: str) -> list[str]:
    return list(
        conn.execute(
            text(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relnamespace = to_regnamespace(:s) "
                "AND NOT (i.indisvalid AND i.indisready)"
            ),
            {"s": schema},
        ).scalars()
    )


def columns(conn: Connection, schema: str) -> dict[tuple[str, str], tuple]:
    rows = conn.execute(
        text(
            """
            SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity,
                   col.is_nullable, col.column_default, col.generation_expression,
                   col.identity_generation
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            JOIN information_schema.columns col
              ON col.table_schema = n.nspname AND col.table_name = c.relname
             AND col.column_name = a.attname
            WHERE n.nspname = :s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
              AND c.relname <> 'alembic_version'
            """
        ),
        {"s": schema},
    )
    return {
        (r[0], r[1]): tuple(_normalise(v, schema) if isinstance(v, str) else v for v in r[2:])
        for r in rows
    }


def constraints(conn: Connection, schema: str) -> dict[tuple[str, str], tuple[str, str]]:
    rows = conn.execute(
        text(
            """
            SELECT c.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid)
            FROM pg_constraint con
            JOIN pg_class c ON c.oid = con.conrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = :s AND c.relname <> 'alembic_version'
            """
        ),
        {"s": schema},
    )
    return {(r[0], r[1]): (r[2], _normalise(r[3], schema)) for r in rows}


def tables(conn: Connection, schema: str) -> set[str]:
    return set(
        conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
        ).scalars()
    )


def new_tenant(engine: Engine, prefix: str = "m") -> TenantInfo:
    slug = unique_slug(prefix)
    return create_tenant(engine, NewTenant(slug, "School", f"admin@{slug}.test", ADMIN_PASSWORD))


def downgrade(engine: Engine, schema: str, revision: str = "0001") -> None:
    with engine.connect() as conn:
        downgrade_tenant(conn, schema, revision)
        conn.commit()


def revision_of(engine: Engine, schema: str) -> str | None:
    with engine.connect() as conn:
        return tenant_revisions(conn, [schema])[schema]


def indexes_of(engine: Engine, schema: str) -> dict[str, str]:
    with engine.connect() as conn:
        return index_defs(conn, schema)


# --- (a) every index in a new tenant ---------------------------------------------------


def test_new_tenant_has_every_index(app: Flask, make_tenant) -> None:
    tenant = make_tenant()
    with app.app_context(), db.engine.connect() as conn:
        found = index_defs(conn, tenant.schema_name)
        assert invalid_indexes(conn, tenant.schema_name) == []
    assert sorted(found) == sorted(ALL_INDEXES)
    assert found == ALL_INDEXES


def test_seed_index_requirements(app: Flask, make_tenant) -> None:
    """The seed's partial, unique, GIN and BRIN indexes, spelled out."""
    tenant = make_tenant()
    with app.app_context(), db.engine.connect() as conn:
        found = index_defs(conn, tenant.schema_name)
    expectations = {
        "ix_courses_published": ["ON S.courses", "WHERE is_published"],
        "ix_courses_active_recent": [
            "(created_at DESC, id DESC)",
            "is_published AND (NOT is_archived)",
        ],
        "ix_lesson_progress_completed": ["WHERE (completed_at IS NOT NULL)"],
        "ix_lesson_progress_user_status": ["WHERE (progress_percentage = 100)"],
        "ix_lesson_progress_completed_analytics": ["WHERE (progress_percentage = 100)"],
        "ix_enrollments_active": ["WHERE ((status)::text = 'active'::text)"],
        "ix_users_active": ["ON S.users", "WHERE is_active"],
        "uq_enrollments_user_id_course_id": ["UNIQUE INDEX", "(user_id, course_id)"],
        "uq_lesson_progress_user_id_lesson_id": ["UNIQUE INDEX", "(user_id, lesson_id)"],
        "ix_courses_search": ["USING gin (search_vector)"],
        "ix_lessons_search": ["USING gin (search_vector)"],
        "ix_user_activity_time_brin": ["ON S.user_activity", "USING brin (occurred_at)"],
    }
    for name, fragments in expectations.items():
        for fragment in fragments:
            assert fragment in found[name], (name, fragment, found[name])
    # The seed's CURRENT_DATE partial index is not there in any form.
    assert not any("CURRENT_DATE" in d.upper() or "now()" in d for d in found.values())


def test_search_vectors_are_generated_columns(app: Flask, make_tenant) -> None:
    tenant = make_tenant()
    with app.app_context(), db.engine.connect() as conn:
        cols = columns(conn, tenant.schema_name)
    for table_name in ("courses", "lessons"):
        type_, _notnull, expression, generated, *_ = cols[(table_name, "search_vector")]
        assert type_ == "tsvector"
        assert generated == "s"  # STORED
        assert "setweight(to_tsvector('english'::regconfig" in expression
        assert "'A'::\"char\"" in expression and "'B'::\"char\"" in expression
    assert "description" in cols[("courses", "search_vector")][2]
    assert "content" in cols[("lessons", "search_vector")][2]


# --- (b) models and migrations agree ---------------------------------------------------


@pytest.fixture
def metadata_schema(app: Flask) -> Iterator[str]:
    """A schema built by `TenantBase.metadata.create_all` instead of the migrations."""
    schema = schema_for(0, unique_slug("meta"))  # no registry row: id 0 is never issued
    with app.app_context():
        engine = db.engine
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            translated = conn.execution_options(
                schema_translate_map={TENANT_SCHEMA_PLACEHOLDER: schema}
            )
            TenantBase.metadata.create_all(translated)
        try:
            yield schema
        finally:
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def test_models_and_migrations_agree(app: Flask, make_tenant, metadata_schema: str) -> None:
    tenant = make_tenant()
    migrated = tenant.schema_name
    with app.app_context(), db.engine.connect() as conn:
        model_tables = {t.name for t in TenantBase.metadata.tables.values()}
        assert tables(conn, metadata_schema) == model_tables
        assert tables(conn, migrated) == model_tables | {"alembic_version"}

        model_columns = columns(conn, metadata_schema)
        migration_columns = columns(conn, migrated)
        assert migration_columns == model_columns

        model_constraints = constraints(conn, metadata_schema)
        assert constraints(conn, migrated) == model_constraints
        assert len(model_constraints) > 20

        model_indexes = index_defs(conn, metadata_schema)
        migration_indexes = index_defs(conn, migrated)
        migration_indexes.pop("alembic_version_pkc")
        assert migration_indexes == model_indexes
        assert set(model_indexes) == set(ALL_INDEXES) - {"alembic_version_pkc"}


def test_public_registry_matches_its_model(app: Flask) -> None:
    """`public.tenants` as migrated == `PublicBase.metadata` built elsewhere."""
    scratch = schema_for(0, unique_slug("pub"))
    with app.app_context():
        engine = db.engine
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{scratch}"'))
            PublicBase.metadata.create_all(
                conn.execution_options(schema_translate_map={"public": scratch})
            )
        try:
            with engine.connect() as conn:

                def registry_only(found: dict) -> dict:
                    return {k: v for k, v in found.items() if k[0] == "tenants"}

                assert registry_only(columns(conn, "public")) == columns(conn, scratch)
                assert registry_only(constraints(conn, "public")) == constraints(conn, scratch)
                assert ("tenants", "ck_tenants_status") in constraints(conn, scratch)
                public_indexes = {
                    k: v for k, v in index_defs(conn, "public").items() if " S.tenants " in v
                }
                assert public_indexes == index_defs(conn, scratch)
                assert set(public_indexes) == {
                    "pk_tenants",
                    "uq_tenants_slug",
                    "uq_tenants_schema_name",
                }
        finally:
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{scratch}" CASCADE'))


def test_new_tenant_is_at_head(app: Flask, make_tenant) -> None:
    tenant = make_tenant()
    with app.app_context():
        assert revision_of(db.engine, tenant.schema_name) == tenant_head() == "0006"
        pending, _total = pending_tenants(db.engine)
    assert tenant.slug not in [slug for slug, _schema in pending]


# --- (c), (d), (e) upgrading every tenant, in a database of our own --------------------


@pytest.fixture
def upgrade_env(admin_database_url: str, tmp_path: Path) -> Iterator[tuple[Flask, str]]:
    name = f"lms_test_upg_{worker_id()}"
    url = servers.recreate_database(admin_database_url, name)
    app = make_app(url, None, tmp_path / "instance")
    try:
        yield app, url
    finally:
        with app.app_context():
            db.engine.dispose()
        servers.drop_database(admin_database_url, name)


def test_upgrade_all_tenants_from_older_revision(upgrade_env) -> None:
    app, url = upgrade_env
    with app.app_context():
        engine = db.engine
        tenants = [new_tenant(engine, "up") for _ in range(3)]
        for t in tenants:
            downgrade(engine, t.schema_name)
        for t in tenants:
            assert revision_of(engine, t.schema_name) == "0001"
            assert indexes_of(engine, t.schema_name) == CONSTRAINT_INDEXES
        pending, total = pending_tenants(engine)
        assert total == 3
        assert sorted(pending) == sorted((t.slug, t.schema_name) for t in tenants)

        started: list[int] = []
        progressed: list[tuple[str, str | None]] = []
        report = upgrade_all(
            engine,
            url,
            jobs=2,
            on_start=started.append,
            on_progress=lambda slug, err: progressed.append((slug, err)),
        )
        assert report.failed == {}
        assert report.ok
        assert sorted(report.upgraded) == sorted(t.slug for t in tenants)
        assert (report.total, report.skipped, report.head) == (3, 0, tenant_head())
        assert started == [3]
        assert sorted(progressed) == sorted((t.slug, None) for t in tenants)
        for t in tenants:
            assert revision_of(engine, t.schema_name) == tenant_head()
            assert indexes_of(engine, t.schema_name) == ALL_INDEXES
            with engine.connect() as conn:
                assert invalid_indexes(conn, t.schema_name) == []

        again = upgrade_all(engine, url, jobs=2)
        assert again.upgraded == []
        assert again.failed == {}
        assert (again.total, again.skipped) == (3, 3)


def test_failing_tenant_is_reported_while_others_upgrade(upgrade_env) -> None:
    app, url = upgrade_env
    with app.app_context():
        engine = db.engine
        tenants = [new_tenant(engine, "fail") for _ in range(3)]
        bad = tenants[1]
        for t in tenants:
            downgrade(engine, t.schema_name)
        # A table squatting on the name of one of 0002's indexes (half-way down its list).
        with engine.begin() as conn:
            conn.execute(text(f'CREATE TABLE "{bad.schema_name}".ix_lessons_search (x int)'))

        report = upgrade_all(engine, url, jobs=2)
        assert list(report.failed) == [bad.slug]
        assert "ix_lessons_search" in report.failed[bad.slug]
        assert not report.ok
        assert sorted(report.upgraded) == sorted(t.slug for t in tenants if t is not bad)
        assert revision_of(engine, bad.schema_name) == "0001"
        for t in tenants:
            if t is not bad:
                assert indexes_of(engine, t.schema_name) == ALL_INDEXES
        bad_indexes = indexes_of(engine, bad.schema_name)
        assert "ix_lessons_search" not in bad_indexes
        # Indexes built before the failure were committed one by one (CONCURRENTLY).
        assert "ix_users_role" in bad_indexes

        runner = app.test_cli_runner()
        result = runner.invoke(args=["db-upgrade", "--jobs", "2"])
        assert result.exit_code != 0
        assert bad.slug in result.output
        assert "1 failed" in result.output
        assert "2 already at head" in result.output

        # Once the obstacle is gone, a re-run finishes the half-built tenant.
        with engine.begin() as conn:
            conn.execute(text(f'DROP TABLE "{bad.schema_name}".ix_lessons_search'))
        result = runner.invoke(args=["db-upgrade", "--jobs", "2"])
        assert result.exit_code == 0, result.output
        assert "1 upgraded, 2 already at head, 0 failed" in result.output
        assert revision_of(engine, bad.schema_name) == tenant_head()
        assert indexes_of(engine, bad.schema_name) == ALL_INDEXES


def test_index_migration_can_be_rerun(upgrade_env) -> None:
    app, url = upgrade_env
    with app.app_context():
        engine = db.engine
        by_hand, invalid = new_tenant(engine, "rerun"), new_tenant(engine, "rerun")
        for t in (by_hand, invalid):
            downgrade(engine, t.schema_name)

        # One of 0002's indexes already exists (say a DBA built it ahead of the release).
        with engine.begin() as conn:
            conn.execute(
                text(
                    f'CREATE INDEX ix_courses_category ON "{by_hand.schema_name}".courses '
                    "(category_id, created_at, id)"
                )
            )
        # An INVALID index left by a CONCURRENTLY build that died: a unique build over
        # duplicate values fails and leaves the half-built index behind.
        with engine.begin() as conn:
            conn.execute(
                text(
                    f'INSERT INTO "{invalid.schema_name}".users (email, name, role) '
                    "VALUES ('s1@x.test', 'S1', 'student'), ('s2@x.test', 'S2', 'student')"
                )
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            with pytest.raises(Exception, match="could not create unique index"):
                conn.execute(
                    text(
                        f"CREATE UNIQUE INDEX CONCURRENTLY ix_users_role "
                        f'ON "{invalid.schema_name}".users (role)'
                    )
                )
            assert invalid_indexes(conn, invalid.schema_name) == ["ix_users_role"]

        report = upgrade_all(engine, url, jobs=2)
        assert report.failed == {}
        assert sorted(report.upgraded) == sorted([by_hand.slug, invalid.slug])
        for t in (by_hand, invalid):
            assert revision_of(engine, t.schema_name) == tenant_head()
            assert indexes_of(engine, t.schema_name) == ALL_INDEXES
            with engine.connect() as conn:
                assert invalid_indexes(conn, t.schema_name) == []


def test_revisions_read_in_chunks_agree(app: Flask, make_tenant) -> None:
    """Chunked reads (locks released between chunks) see what one big read sees."""
    tenants = [make_tenant() for _ in range(3)]
    schemas = [t.schema_name for t in tenants] + ["t_not_a_tenant"]
    with app.app_context(), db.engine.connect() as conn:
        whole = tenant_revisions(conn, schemas)
        chunked = tenant_revisions(conn, schemas, chunk=1)
    assert whole == chunked
    assert whole == {**{t.schema_name: tenant_head() for t in tenants}, "t_not_a_tenant": None}
