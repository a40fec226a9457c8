"""Benchmark data: one tenant at the issue's size, plus the peers' floor schema.

Reusable by any benchmark (not a test):

    from bench.data import build
    info = build("postgresql://root@127.0.0.1:5432/lms_bench_api", reuse=True)

or on its own: ``.venv/bin/python bench/data.py [--database-url URL] [--reuse]``.

What it builds (fixed seeds and fixed timestamps: the same data on every run):

- a throw-away database (dropped and re-created unless ``reuse`` and complete),
  the public registry at head, and one tenant ``bench`` made by ``create_tenant``;
- 20 categories, 100 instructors (ids 2-101), 10,000 students (ids 102-10,101),
  all with the password ``PASSWORD``;
- 10,000 courses (90 % published, ~2.7 % archived, created over ~14 months, two
  courses per timestamp so the keyset tie-breaker matters), each with 10 lessons
  (~4 % unpublished; ``total_lessons`` counts the published ones). Text is drawn
  from an English vocabulary with a Zipf-like law plus per-category topic words
  and rare terms, so full-text search has hits from ~0.01 % to ~100 % of lessons;
- 200,000 enrollments: 20 distinct courses per student among courses
  1..9,990 (3 % dropped, 5 % completed); courses 9,991-10,000 have none (the
  bulk-enroll target is ``BULK_COURSE_ID``);
- ~1,000,000 lesson_progress rows: per enrollment the first n lessons (n from 0
  to 10), 100 % except the last one (0/30/100), ``completed_at`` iff 100, the
  course id denormalised;
- then ``VACUUM (ANALYZE)``, and the peers' ``floor`` schema from
  ../shared/peers/floor_*.sql (run with psql) in the same database.

Rows go in server-side: courses and lessons by COPY into the explicitly
schema-qualified tables (psycopg2.sql.Identifier), users, enrollments and progress
by ``INSERT ... SELECT`` over ``generate_series`` built with SQLAlchemy constructs
on a connection carrying ``schema_translate_map``. The connection's search_path
is never changed. Secondary indexes of the bulk-loaded tables are dropped before
the load and re-created afterwards from their own ``pg_indexes`` definitions.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import sqlalchemy as sa  # noqa: E402
from psycopg2 import sql as pgsql  # noqa: E402
from sqlalchemy import (  # noqa: E402
    Connection,
    Engine,
    and_,
    case,
    cast,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402
from tqdm import tqdm  # noqa: E402

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/lms_bench_api"
# The peers live beside the checkout (shared/peers); PEERS_DIR overrides.
PEERS_DIR = Path(
    os.environ.get("PEERS_DIR", Path(__file__).resolve().parents[2] / "shared" / "peers")
)
FLOOR_SCRIPTS = ("floor_schema.sql", "floor_data.sql", "floor_indexes.sql")

SEED = 20261125
TENANT_SLUG = "bench"
ADMIN_EMAIL = "admin@bench.test"
PASSWORD = "bench-password-123"
# Fixed "now" so every run builds identical rows (timestamps included).
EPOCH = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

N_CATEGORIES = 20
N_INSTRUCTORS = 100
N_STUDENTS = 10_000
N_COURSES = 10_000
LESSONS_PER_COURSE = 10
ENROLLMENTS_PER_STUDENT = 20
SPARE_COURSES = 10  # the last courses get no enrollment (bulk-enroll targets)

ADMIN_ID = 1  # made by create_tenant
FIRST_INSTRUCTOR_ID = 2
FIRST_STUDENT_ID = FIRST_INSTRUCTOR_ID + N_INSTRUCTORS  # 102
ENROLLABLE_COURSES = N_COURSES - SPARE_COURSES  # 9,990
# Distinct courses per student: k * stride (k < 20) never wraps modulo 9,990.
COURSE_STRIDE = ENROLLABLE_COURSES // ENROLLMENTS_PER_STUDENT  # 499
STUDENT_SPREAD = 7919  # prime, coprime with 9,990: students spread over all courses
BULK_COURSE_ID = N_COURSES - 1  # 9,999: published, not archived, no enrollment

TENANT_TABLES = ("users", "categories", "courses", "lessons", "enrollments", "lesson_progress")
LOAD_CHUNKS = 10  # progress-bar granularity of the INSERT ... SELECT steps

# --------------------------------------------------------------------------- text

CATEGORIES: dict[str, tuple[str, ...]] = {
    "Mathematics": (
        "algebra",
        "calculus",
        "geometry",
        "topology",
        "matrices",
        "integrals",
        "derivatives",
        "proofs",
        "trigonometry",
        "sequences",
    ),
    "Physics": (
        "quantum",
        "mechanics",
        "relativity",
        "thermodynamics",
        "optics",
        "newton",
        "momentum",
        "electromagnetism",
        "particles",
        "waves",
    ),
    "Chemistry": (
        "molecules",
        "atoms",
        "reactions",
        "organic",
        "catalysts",
        "bonds",
        "polymers",
        "acids",
        "electrons",
        "isotopes",
    ),
    "Biology": (
        "photosynthesis",
        "mitosis",
        "cells",
        "genetics",
        "evolution",
        "proteins",
        "enzymes",
        "ecology",
        "neurons",
        "chromosomes",
    ),
    "Computer Science": (
        "algorithms",
        "databases",
        "compilers",
        "networks",
        "recursion",
        "encryption",
        "neural",
        "graphs",
        "sorting",
        "concurrency",
    ),
    "History": (
        "renaissance",
        "empires",
        "revolution",
        "medieval",
        "dynasties",
        "treaties",
        "colonialism",
        "wars",
        "archives",
        "reformation",
    ),
    "Literature": (
        "sonnets",
        "novels",
        "poetry",
        "tragedy",
        "narrative",
        "shakespeare",
        "metaphor",
        "haiku",
        "prose",
        "drama",
    ),
    "Philosophy": (
        "ethics",
        "logic",
        "metaphysics",
        "epistemology",
        "stoicism",
        "kant",
        "virtue",
        "existentialism",
        "dialectic",
        "aesthetics",
    ),
    "Economics": (
        "markets",
        "inflation",
        "supply",
        "demand",
        "monetary",
        "trade",
        "labor",
        "taxation",
        "equilibrium",
        "banking",
    ),
    "Psychology": (
        "cognition",
        "memory",
        "behavior",
        "emotion",
        "perception",
        "motivation",
        "personality",
        "learning",
        "attention",
        "therapy",
    ),
    "Music": (
        "harmony",
        "chords",
        "rhythm",
        "melody",
        "counterpoint",
        "symphony",
        "jazz",
        "scales",
        "composition",
        "orchestration",
    ),
    "Art": (
        "painting",
        "sculpture",
        "perspective",
        "impressionism",
        "color",
        "drawing",
        "baroque",
        "portraits",
        "ceramics",
        "photography",
    ),
    "Languages": (
        "grammar",
        "vocabulary",
        "pronunciation",
        "spanish",
        "mandarin",
        "syntax",
        "phonetics",
        "idioms",
        "conjugation",
        "translation",
    ),
    "Geography": (
        "climate",
        "rivers",
        "mountains",
        "glaciers",
        "maps",
        "volcanoes",
        "deserts",
        "oceans",
        "continents",
        "population",
    ),
    "Engineering": (
        "circuits",
        "bridges",
        "robotics",
        "materials",
        "turbines",
        "sensors",
        "hydraulics",
        "welding",
        "aerodynamics",
        "control",
    ),
    "Medicine": (
        "anatomy",
        "diagnosis",
        "pharmacology",
        "immunology",
        "surgery",
        "vaccines",
        "cardiology",
        "infection",
        "nutrition",
        "pathology",
    ),
    "Business": (
        "marketing",
        "accounting",
        "leadership",
        "strategy",
        "finance",
        "startups",
        "negotiation",
        "management",
        "branding",
        "logistics",
    ),
    "Law": (
        "contracts",
        "torts",
        "constitution",
        "litigation",
        "property",
        "criminal",
        "evidence",
        "courts",
        "statutes",
        "rights",
    ),
    "Astronomy": (
        "galaxies",
        "stars",
        "planets",
        "telescopes",
        "cosmology",
        "nebulae",
        "orbits",
        "supernova",
        "exoplanets",
        "comets",
    ),
    "Statistics": (
        "probability",
        "regression",
        "variance",
        "sampling",
        "distributions",
        "inference",
        "bayesian",
        "hypothesis",
        "correlation",
        "estimation",
    ),
}

# General academic English, most frequent first (drawn with weight 1/rank).
_GENERAL_TEXT = """example concept method model process system theory analysis structure function
    problem practice principle pattern evidence result approach question measure change
    energy value form relation context source element factor rule study course idea
    detail level lecture case point effect range step area basis term stage period
    feature role type view version section review summary exercise solution answer
    argument assumption framework technique strategy limit sample series table chart
    figure history origin purpose goal outcome impact benefit risk cost standard quality
    property variable constant equation formula ratio rate scale unit volume weight
    length speed force pressure temperature surface layer network link signal message
    code language text story author reader audience character theme style tradition
    culture society community group individual behaviour decision choice policy
    resource material tool device machine engine design build test experiment
    observation hypothesis conclusion interpretation perspective critique comparison
    contrast distinction category classification definition description explanation
    illustration demonstration application implementation evaluation assessment"""
GENERAL_WORDS = tuple(_GENERAL_TEXT.split())

# Rare terms: about one lesson in fifty gets one of them (each in ~15 lessons).
_RARE_TEXT = """palimpsest zeitgeist serendipity quixotic ephemeral labyrinth juxtaposition
    chiaroscuro onomatopoeia archipelago isthmus fjord tundra permafrost monsoon
    axolotl platypus narwhal tardigrade cephalopod mycelium lichen stromatolite
    trilobite ammonite obsidian basalt feldspar quartzite gneiss kaleidoscope
    metronome harpsichord theremin glockenspiel oboe bassoon sitar didgeridoo
    origami calligraphy tapestry mosaic fresco lithograph etching filigree marquetry
    cartography heraldry numismatics philately paleography epigraphy sigillography
    vexillology campanology horology oenology mycology lepidoptery ornithology"""
RARE_WORDS = tuple(_RARE_TEXT.split())

TITLE_PREFIXES = (
    "Introduction to",
    "Foundations of",
    "Advanced",
    "Applied",
    "Essentials of",
    "Practical",
    "Mastering",
    "Modern",
)
DIFFICULTIES = ("beginner", "intermediate", "advanced")


def _cum_weights(n: int, s: float = 1.0) -> list[float]:
    total, out = 0.0, []
    for rank in range(1, n + 1):
        total += 1.0 / rank**s
        out.append(total)
    return out


class TextMaker:
    """Deterministic course and lesson text (one random.Random, fixed seed)."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.general_cum = _cum_weights(len(GENERAL_WORDS))
        self.categories = list(CATEGORIES.items())

    def words(self, n: int, topics: Sequence[str], topic_share: float) -> list[str]:
        rnd = self.rnd
        general = rnd.choices(GENERAL_WORDS, cum_weights=self.general_cum, k=n)
        for i in range(n):
            if rnd.random() < topic_share:
                general[i] = rnd.choice(topics)
        return general

    def course(self, course_id: int) -> tuple[str, str]:
        name, topics = self.categories[(course_id - 1) % N_CATEGORIES]
        rnd = self.rnd
        first, second = rnd.sample(topics, 2)
        prefix = TITLE_PREFIXES[rnd.randrange(len(TITLE_PREFIXES))]
        title = f"{prefix} {first.capitalize()}"
        if rnd.random() < 0.5:
            title += f" and {second.capitalize()}"
        level = DIFFICULTIES[course_id % 3]
        body = " ".join(self.words(rnd.randint(15, 35), topics, 0.2))
        article = "An" if level[0] in "aeiou" else "A"
        description = f"{article} {level} {name.lower()} course on {first} and {second}: {body}."
        return title, description

    def lesson(self, course_id: int, order_index: int) -> tuple[str, str]:
        _, topics = self.categories[(course_id - 1) % N_CATEGORIES]
        rnd = self.rnd
        title = f"{order_index}. {rnd.choice(topics).capitalize()}: {rnd.choice(GENERAL_WORDS)}"
        words = self.words(rnd.randint(40, 80), topics, 0.25)
        if rnd.random() < 0.02:
            words[rnd.randrange(len(words))] = rnd.choice(RARE_WORDS)
        sentences = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
        return title, ". ".join(s.capitalize() for s in sentences) + "."


# --------------------------------------------------------------------------- result


@dataclass
class BenchData:
    url: str
    slug: str
    schema: str
    reused: bool
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    first_student_id: int = FIRST_STUDENT_ID
    n_students: int = N_STUDENTS
    admin_email: str = ADMIN_EMAIL
    password: str = PASSWORD
    bulk_course_id: int = BULK_COURSE_ID

    def student_email(self, user_id: int) -> str:
        return student_email(user_id)


def student_email(user_id: int) -> str:
    return f"student{user_id - FIRST_STUDENT_ID + 1}@bench.test"


def instructor_email(user_id: int) -> str:
    return f"instructor{user_id - FIRST_INSTRUCTOR_ID + 1}@bench.test"


EXPECTED = {
    "users": 1 + N_INSTRUCTORS + N_STUDENTS,
    "categories": N_CATEGORIES,
    "courses": N_COURSES,
    "lessons": N_COURSES * LESSONS_PER_COURSE,
    "enrollments": N_STUDENTS * ENROLLMENTS_PER_STUDENT,
}


# --------------------------------------------------------------------------- database


def plain_engine(url: str) -> Engine:
    from config.settings import normalize_database_url

    return sa.create_engine(normalize_database_url(url), poolclass=NullPool)


def recreate_database(url: str) -> None:
    target = make_url(url)
    admin = plain_engine(target.set(database="postgres").render_as_string(False))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()


def database_exists(url: str) -> bool:
    target = make_url(url)
    admin = plain_engine(target.set(database="postgres").render_as_string(False))
    with admin.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}
        ).first()
    admin.dispose()
    return found is not None


def tenant_schema(engine: Engine) -> str | None:
    from lms_app.tenancy.registry import load_tenant

    try:
        tenant = load_tenant(engine, TENANT_SLUG)
    except sa.exc.ProgrammingError:  # no registry table yet
        return None
    return tenant.schema_name if tenant is not None else None


def table_counts(engine: Engine, schema: str) -> dict[str, int]:
    counts = {}
    with engine.connect() as conn:
        for name in TENANT_TABLES:
            stmt = pgsql.SQL("SELECT count(*) FROM {}").format(pgsql.Identifier(schema, name))
            counts[name] = _scalar(conn, stmt)
        counts["published_courses"] = _scalar(
            conn,
            pgsql.SQL("SELECT count(*) FROM {} WHERE is_published AND NOT is_archived").format(
                pgsql.Identifier(schema, "courses")
            ),
        )
    return counts


def _scalar(conn: Connection, stmt: pgsql.Composed) -> int:
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(stmt)
        return cur.fetchone()[0]
    finally:
        cur.close()


def floor_ready(engine: Engine) -> bool:
    with engine.connect() as conn:
        exists = conn.execute(
            text("SELECT to_regclass('floor.lesson_progress') IS NOT NULL")
        ).scalar_one()
        if not exists:
            return False
        return conn.execute(text("SELECT count(*) > 900000 FROM floor.lesson_progress")).scalar()


def _schema_shape(conn: Connection, schema: str) -> set[str]:
    """Index definitions and column definitions of a schema, schema name stripped."""
    indexes = conn.execute(
        text("SELECT indexdef FROM pg_indexes WHERE schemaname = :s"), {"s": schema}
    ).scalars()
    columns = conn.execute(
        text(
            "SELECT concat_ws(' ', table_name, column_name, data_type, character_maximum_length,"
            " column_default, is_nullable, generation_expression)"
            " FROM information_schema.columns WHERE table_schema = :s"
        ),
        {"s": schema},
    ).scalars()
    return {row.replace(f"{schema}.", "<schema>.") for row in [*indexes, *columns]}


def schema_drift(engine: Engine, schema: str) -> set[str]:
    """What differs between `schema` and a tenant schema made by today's migrations.

    The reference schema is migrated inside a transaction that is rolled back, so
    nothing of it remains. Catches migrations edited in place since the data was built.
    """
    from lms_app.tenancy.migrations import migrate_tenant

    reference = "bench_reference_check"
    with engine.connect() as conn:
        built = _schema_shape(conn, schema)
        conn.exec_driver_sql(f'CREATE SCHEMA "{reference}"')
        migrate_tenant(conn, reference, fresh=True)
        wanted = _schema_shape(conn, reference)
        conn.rollback()
    return wanted ^ built


def complete(counts: dict[str, int]) -> bool:
    return (
        all(counts.get(k) == v for k, v in EXPECTED.items())
        and counts.get("lesson_progress", 0) > 900_000
    )


# --------------------------------------------------------------------------- loading


def _copy_rows(dbapi_conn, schema: str, table: str, columns: Sequence[str], rows) -> None:
    """COPY rows (tuples; None -> NULL; no tabs/newlines/backslashes) into schema.table."""
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in row))
        buf.write("\n")
    buf.seek(0)
    stmt = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
        pgsql.Identifier(schema, table), pgsql.SQL(", ").join(map(pgsql.Identifier, columns))
    )
    with dbapi_conn.cursor() as cur:
        cur.copy_expert(stmt.as_string(dbapi_conn), buf)


def _secondary_indexes(conn: Connection, schema: str, tables: Sequence[str]) -> list[tuple]:
    """(name, definition) of indexes that back no constraint, on the given tables."""
    rows = conn.execute(
        text(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "JOIN pg_class c ON c.relname = i.indexname "
            "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = i.schemaname "
            "WHERE i.schemaname = :schema AND i.tablename = ANY(:tables) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid) "
            "ORDER BY i.tablename, i.indexname"
        ),
        {"schema": schema, "tables": list(tables)},
    ).all()
    return [(r.indexname, r.indexdef) for r in rows]


def _chunks(start: int, stop: int, parts: int) -> Iterator[tuple[int, int]]:
    size = -(-(stop - start) // parts)
    for lo in range(start, stop, size):
        yield lo, min(lo + size, stop)


def _series(start, stop, name: str):
    return func.generate_series(start, stop).table_valued("n").render_derived(name=name)


def _ts(expr_minutes) -> sa.ColumnElement:
    """EPOCH minus a number of minutes, as timestamptz."""
    return literal(EPOCH) - func.make_interval(0, 0, 0, 0, 0, expr_minutes)


def load_users(conn: Connection, password_hash: str) -> int:
    from lms_app.accounts.models import User

    g = _series(1, N_INSTRUCTORS + N_STUDENTS, "g")
    n = g.c.n
    is_instructor = n <= N_INSTRUCTORS
    stmt = insert(User).from_select(
        ["id", "email", "name", "role", "password_hash", "created_at", "updated_at"],
        select(
            n + (FIRST_INSTRUCTOR_ID - 1),
            case(
                (is_instructor, func.concat("instructor", n, "@bench.test")),
                else_=func.concat("student", n - N_INSTRUCTORS, "@bench.test"),
            ),
            case(
                (is_instructor, func.concat("Instructor ", n)),
                else_=func.concat("Student ", n - N_INSTRUCTORS),
            ),
            case((is_instructor, "instructor"), else_="student"),
            literal(password_hash),
            _ts(n * 37),
            _ts(n * 37),
        ),
    )
    return conn.execute(stmt).rowcount


def load_categories(conn: Connection) -> None:
    from lms_app.catalog.models import Category

    conn.execute(
        insert(Category),
        [
            {"id": i, "name": name, "slug": name.lower().replace(" ", "-"), "created_at": EPOCH}
            for i, name in enumerate(CATEGORIES, start=1)
        ],
    )


def course_rows(maker: TextMaker, lo: int, hi: int) -> Iterator[tuple]:
    for cid in range(lo, hi):
        title, description = maker.course(cid)
        # Two courses per timestamp (ties), newest = lowest id, ~14 months in all.
        created = EPOCH - timedelta(minutes=84 * ((cid - 1) // 2))
        yield (
            cid,
            title,
            description,
            1 + (cid - 1) % N_CATEGORIES,
            FIRST_INSTRUCTOR_ID + (cid - 1) % N_INSTRUCTORS,
            DIFFICULTIES[cid % 3],
            1 + cid % 40,
            f"https://cdn.bench.test/courses/{cid}.jpg" if cid % 4 else None,
            cid % 10 != 0,  # is_published
            cid % 37 == 0,  # is_archived
            created.isoformat(),
            created.isoformat(),
        )


COURSE_COPY_COLUMNS = (
    "id", "title", "description", "category_id", "instructor_id", "difficulty_level",
    "estimated_hours", "thumbnail_url", "is_published", "is_archived", "created_at",
    "updated_at",
)  # fmt: skip
LESSON_COPY_COLUMNS = (
    "id", "course_id", "title", "content", "order_index", "is_published", "created_at",
    "updated_at",
)  # fmt: skip


def lesson_rows(maker: TextMaker, lo: int, hi: int) -> Iterator[tuple]:
    for cid in range(lo, hi):
        created = EPOCH - timedelta(minutes=84 * ((cid - 1) // 2)) + timedelta(hours=1)
        for i in range(1, LESSONS_PER_COURSE + 1):
            lid = (cid - 1) * LESSONS_PER_COURSE + i
            title, content = maker.lesson(cid, i)
            ts = (created + timedelta(minutes=i)).isoformat()
            yield (lid, cid, title, content, i, lid % 23 != 0, ts, ts)


def load_enrollments(conn: Connection, lo: int, hi: int) -> int:
    """Students lo..hi-1 (0-based): 20 distinct courses each among 1..9,990."""
    from lms_app.learning.models import Enrollment

    s, k = _series(lo, hi - 1, "s"), _series(0, ENROLLMENTS_PER_STUDENT - 1, "k")
    mix = (s.c.n * 7 + k.c.n * 3) % 100
    enrolled_minutes = (s.c.n * 13 + k.c.n * 7919) % 400_000 + 1440
    stmt = insert(Enrollment).from_select(
        ["user_id", "course_id", "status", "enrolled_at", "updated_at"],
        select(
            s.c.n + FIRST_STUDENT_ID,
            1 + (s.c.n * STUDENT_SPREAD + k.c.n * COURSE_STRIDE) % ENROLLABLE_COURSES,
            case((mix < 3, "dropped"), (mix < 8, "completed"), else_="active"),
            _ts(enrolled_minutes),
            _ts(enrolled_minutes),
        ).select_from(s.join(k, literal(True))),
    )
    return conn.execute(stmt).rowcount


PROGRESS_COLUMNS = (
    "user_id", "lesson_id", "course_id", "progress_percentage", "time_spent", "completed_at",
    "updated_at",
)  # fmt: skip


def load_progress(conn: Connection, lo_user: int, hi_user: int) -> int:
    """Per enrollment: lessons 1..n (n = (user + course) % 11) have a progress row."""
    from lms_app.catalog.models import Lesson
    from lms_app.learning.models import Enrollment, LessonProgress

    e, lesson = Enrollment.__table__, Lesson.__table__
    reach = (e.c.user_id + e.c.course_id) % (LESSONS_PER_COURSE + 1)
    last_pct = case(
        ((e.c.user_id + lesson.c.id) % 3 == 0, 0),
        ((e.c.user_id + lesson.c.id) % 3 == 1, 30),
        else_=100,
    )
    pct = case((lesson.c.order_index < reach, 100), else_=last_pct)
    done_at = e.c.enrolled_at + func.make_interval(0, 0, 0, lesson.c.order_index)
    stmt = insert(LessonProgress).from_select(
        PROGRESS_COLUMNS,
        select(
            e.c.user_id,
            lesson.c.id,
            e.c.course_id,
            cast(pct, sa.SmallInteger),
            pct * 9 + (e.c.user_id * 31 + lesson.c.id) % 240,
            case((pct == 100, done_at)),
            done_at,
        )
        .select_from(
            e.join(
                lesson,
                and_(lesson.c.course_id == e.c.course_id, lesson.c.order_index <= reach),
            )
        )
        .where(e.c.user_id >= lo_user, e.c.user_id < hi_user),
    )
    return conn.execute(stmt).rowcount


def sync_total_lessons(conn: Connection) -> None:
    """courses.total_lessons = published lessons (one grouped pass, no per-course scan)."""
    from lms_app.catalog.models import Course, Lesson

    published = (
        select(Lesson.course_id, func.count().filter(Lesson.is_published).label("n"))
        .group_by(Lesson.course_id)
        .subquery("published")
    )
    conn.execute(
        update(Course).where(Course.id == published.c.course_id).values(total_lessons=published.c.n)
    )


def reset_identities(conn: Connection, schema: str) -> None:
    for name in ("users", "categories", "courses", "lessons"):
        qualified = pgsql.Identifier(schema, name).as_string(conn.connection.dbapi_connection)
        conn.execute(
            text(
                "SELECT setval(pg_get_serial_sequence(:t, 'id'), "
                "(SELECT max(id) FROM " + qualified + "))"
            ),
            {"t": qualified},
        )


def build_tenant(engine: Engine, schema: str, seconds: dict[str, float]) -> None:
    from lms_app.accounts.passwords import hash_password
    from lms_app.db.engines import translate_map

    maker = TextMaker(SEED)
    password_hash = hash_password(PASSWORD)
    with engine.connect() as raw:
        conn = raw.execution_options(schema_translate_map=translate_map(schema))
        dbapi = conn.connection.dbapi_connection
        conn.exec_driver_sql("SET synchronous_commit = off")
        conn.exec_driver_sql("SET maintenance_work_mem = '256MB'")
        loaded = [t for t in TENANT_TABLES if t != "categories"]
        indexes = _secondary_indexes(conn, schema, loaded)
        for name, _ in indexes:
            conn.execute(text("DROP INDEX " + pgsql.Identifier(schema, name).as_string(dbapi)))
        conn.commit()

        def step(label: str, total: int, unit: str = "rows"):
            return tqdm(total=total, desc=f"{label:16}", unit=unit, unit_scale=True, leave=True)

        started = time.perf_counter()
        with step("users", N_INSTRUCTORS + N_STUDENTS) as bar:
            bar.update(load_users(conn, password_hash))
            load_categories(conn)
            conn.commit()
        with step("courses", N_COURSES) as bar:
            for lo, hi in _chunks(1, N_COURSES + 1, LOAD_CHUNKS):
                rows = course_rows(maker, lo, hi)
                _copy_rows(dbapi, schema, "courses", COURSE_COPY_COLUMNS, rows)
                bar.update(hi - lo)
            conn.commit()
        with step("lessons", N_COURSES * LESSONS_PER_COURSE) as bar:
            for lo, hi in _chunks(1, N_COURSES + 1, LOAD_CHUNKS * 2):
                rows = lesson_rows(maker, lo, hi)
                _copy_rows(dbapi, schema, "lessons", LESSON_COPY_COLUMNS, rows)
                bar.update((hi - lo) * LESSONS_PER_COURSE)
            sync_total_lessons(conn)
            reset_identities(conn, schema)
            conn.commit()
        with step("enrollments", N_STUDENTS * ENROLLMENTS_PER_STUDENT) as bar:
            for lo, hi in _chunks(0, N_STUDENTS, LOAD_CHUNKS):
                bar.update(load_enrollments(conn, lo, hi))
            conn.commit()
        with step("lesson_progress", N_STUDENTS * ENROLLMENTS_PER_STUDENT * 5) as bar:
            first, stop = FIRST_STUDENT_ID, FIRST_STUDENT_ID + N_STUDENTS
            for lo, hi in _chunks(first, stop, LOAD_CHUNKS):
                bar.update(load_progress(conn, lo, hi))
            bar.total = bar.n  # the estimate was 5 per enrollment
            bar.refresh()
            conn.commit()
        seconds["rows"] = time.perf_counter() - started

        started = time.perf_counter()
        with step("indexes", len(indexes), unit="idx") as bar:
            for name, definition in indexes:
                bar.set_postfix_str(name[-28:])
                conn.exec_driver_sql(definition)
                bar.update(1)
            conn.commit()
        seconds["indexes"] = time.perf_counter() - started

    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        dbapi = conn.connection.dbapi_connection
        with step_bar("vacuum analyze", len(TENANT_TABLES)) as bar:
            for name in TENANT_TABLES:
                conn.exec_driver_sql(
                    "VACUUM (ANALYZE) " + pgsql.Identifier(schema, name).as_string(dbapi)
                )
                bar.update(1)
    seconds["vacuum"] = time.perf_counter() - started


def step_bar(label: str, total: int):
    return tqdm(total=total, desc=f"{label:16}", unit="tbl", leave=True)


def build_floor(url: str) -> None:
    target = make_url(url)
    args = ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-X", "-d", target.database]
    if target.host:
        args += ["-h", target.host]
    if target.port:
        args += ["-p", str(target.port)]
    if target.username:
        args += ["-U", target.username]
    with tqdm(total=len(FLOOR_SCRIPTS), desc=f"{'peers floor':16}", unit="file") as bar:
        for script in FLOOR_SCRIPTS:
            bar.set_postfix_str(script)
            subprocess.run(
                [*args, "-f", str(PEERS_DIR / script)],
                check=True,
                cwd=PEERS_DIR,
                stdout=subprocess.DEVNULL,
            )
            bar.update(1)


def build(url: str = DEFAULT_URL, *, reuse: bool = False, floor: bool = True) -> BenchData:
    """Make (or, with `reuse`, find) the benchmark database; see the module docstring."""
    from lms_app.tenancy.migrations import migrate_tenant, upgrade_public
    from lms_app.tenancy.provisioning import NewTenant, create_tenant

    seconds: dict[str, float] = {}
    if reuse and database_exists(url):
        engine = plain_engine(url)
        schema = tenant_schema(engine)
        if schema is not None:
            # As a release would: newer migrations applied to the kept data.
            with engine.connect() as conn:
                migrate_tenant(conn, schema)
                conn.commit()
            counts = table_counts(engine, schema)
            drift = schema_drift(engine, schema)
            if drift:
                print(f"rebuilding: the schema differs from the migrations: {sorted(drift)}",
                      file=sys.stderr)  # fmt: skip
            if complete(counts) and not drift:
                if floor and not floor_ready(engine):
                    started = time.perf_counter()
                    build_floor(url)
                    seconds["floor"] = time.perf_counter() - started
                engine.dispose()
                print(f"reusing {make_url(url).database}: {counts}", file=sys.stderr)
                return BenchData(url, TENANT_SLUG, schema, True, counts, seconds)
        engine.dispose()

    started = time.perf_counter()
    recreate_database(url)
    engine = plain_engine(url)
    upgrade_public(engine)
    tenant = create_tenant(
        engine, NewTenant(TENANT_SLUG, "Bench School", ADMIN_EMAIL, PASSWORD, "Bench Admin")
    )
    seconds["tenant"] = time.perf_counter() - started
    build_tenant(engine, tenant.schema_name, seconds)
    if floor:
        started = time.perf_counter()
        build_floor(url)
        seconds["floor"] = time.perf_counter() - started
    counts = table_counts(engine, tenant.schema_name)
    engine.dispose()
    if not complete(counts):
        raise RuntimeError(f"bench data incomplete: {counts}")
    return BenchData(url, TENANT_SLUG, tenant.schema_name, False, counts, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--reuse", action="store_true", help="keep a complete database")
    parser.add_argument("--no-floor", action="store_true", help="skip the peers' floor schema")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    info = build(args.database_url, reuse=args.reuse, floor=not args.no_floor)
    print(f"{info.counts} in {time.perf_counter() - started:.1f} s {info.seconds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
