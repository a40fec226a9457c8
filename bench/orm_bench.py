"""ORM against Core for the reads and writes issue 12 moved to the ORM (not a test).

Two measurements on the bench data (bench/data.py), in one run:

1. Each converted path called in-process, inside a request context of the app as
   configured for the server (same environment, Redis on, reads routed as in a
   GET), its ORM version against its Core version (the one the app does not ship
   is kept below), alternating in blocks: microseconds per call. These are the
   cache-miss costs; the course detail is served from the cache. The roster's
   ORM version was measured and not kept (the app ships the Core one).
2. The app as the Procfile starts it, the Core build (a git worktree of
   --core-rev, the last commit before the conversion) against this checkout,
   under wrk, alternating round by round (bench/ab.py): what a client sees.

    .venv/bin/python bench/orm_bench.py --reuse
"""

from __future__ import annotations

import functools
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ab
import api_bench
import load
import psycopg2
from psycopg2 import sql as pgsql
from sqlalchemy import BigInteger, bindparam, select, true, update

# The last commit whose course detail, roster and course/lesson writes were Core.
CORE_REV = "31df076"
BLOCK = 50


# --- the Core versions, as they were before the conversion -------------------------


def core_course_detail(course_id: int) -> dict[str, Any] | None:
    from lms_app.accounts.models import User
    from lms_app.catalog.models import Category, Course, Lesson
    from lms_app.catalog.queries import COURSE_COLUMNS
    from lms_app.db.reads import read

    detail_stmt = (
        select(
            *COURSE_COLUMNS,
            Category.name.label("category_name"),
            Category.slug.label("category_slug"),
            User.name.label("instructor_name"),
        )
        .outerjoin(Category, Category.id == Course.category_id)
        .outerjoin(User, User.id == Course.instructor_id)
        .where(Course.id == bindparam("course_id", type_=BigInteger))
    )
    outline = (
        select(Lesson.id, Lesson.title, Lesson.order_index, Lesson.is_published)
        .where(Lesson.course_id == bindparam("course_id", type_=BigInteger))
        .order_by(Lesson.order_index, Lesson.id)
    )
    params = {"course_id": course_id}
    row = read(detail_stmt, params).first()
    if row is None:
        return None
    detail = {column.key: getattr(row, column.key) for column in COURSE_COLUMNS}
    detail["category"] = (
        {"id": row.category_id, "name": row.category_name, "slug": row.category_slug}
        if row.category_name is not None
        else None
    )
    detail["instructor"] = (
        {"id": row.instructor_id, "name": row.instructor_name}
        if row.instructor_name is not None
        else None
    )
    detail["lessons"] = [r._asdict() for r in read(outline, params)]
    return detail


@functools.cache
def orm_roster_statement() -> Any:
    """The roster through the ORM, as it was tried for issue 12 and measured here:
    Enrollment entities with their user by contains_eager over the join. The app
    keeps the Core statement (lms_app.learning.queries.ROSTER)."""
    from sqlalchemy import Integer
    from sqlalchemy.orm import aliased, contains_eager, raiseload

    from lms_app.accounts.models import User
    from lms_app.learning import queries as q
    from lms_app.learning.models import Enrollment

    filtered = select(Enrollment).where(
        Enrollment.course_id == bindparam("course_id", type_=BigInteger)
    )
    page = aliased(
        Enrollment,
        filtered.order_by(Enrollment.enrolled_at.desc(), Enrollment.id.desc())
        .limit(bindparam("fetch", type_=Integer))
        .subquery("page"),
    )
    agg = q.progress_aggregate(page.user_id, page.course_id)
    return (
        select(
            page,
            agg.c.completed_lessons,
            agg.c.last_activity,
            q.percentage(agg.c.completed_lessons, bindparam("total", type_=Integer)),
        )
        .join(page.user)
        .join(agg, true())
        .options(
            contains_eager(page.user).load_only(User.name, User.email, raiseload=True),
            raiseload("*"),
        )
        .order_by(page.enrolled_at.desc(), page.id.desc())
    )


def orm_roster(course_id: int, total_lessons: int, limit: int) -> list[Any]:
    from lms_app.extensions import db

    params = {"course_id": course_id, "fetch": limit + 1, "total": total_lessons}
    return list(db.session.execute(orm_roster_statement(), params).all())


def core_update_course(course_id: int, title: str) -> dict[str, Any]:
    from lms_app.catalog.models import Course
    from lms_app.catalog.queries import COURSE_COLUMNS
    from lms_app.extensions import db

    db.session.execute(select(Course.instructor_id).where(Course.id == course_id).with_for_update())
    row = db.session.execute(
        update(Course).where(Course.id == course_id).values(title=title).returning(*COURSE_COLUMNS)
    ).one()
    return row._asdict()


def orm_update_course(course_id: int, title: str) -> dict[str, Any]:
    from sqlalchemy.orm import raiseload

    from lms_app.catalog.models import Course
    from lms_app.catalog.queries import COURSE_COLUMNS
    from lms_app.extensions import db

    course = db.session.get(Course, course_id, with_for_update=True, options=[raiseload("*")])
    course.title = title
    db.session.flush()
    return {column.key: getattr(course, column.key) for column in COURSE_COLUMNS}


# --- 1. in-process ------------------------------------------------------------------


def in_process(bench: ab.Bench, course: int, total_lessons: int, rounds: int) -> str:
    from config.settings import Settings
    from lms_app import create_app
    from lms_app.catalog.cached_reads import _DETAIL
    from lms_app.extensions import db
    from lms_app.learning import queries as learning
    from lms_app.learning.schemas import EnrollmentPageSchema

    app = create_app(Settings.from_env({**bench.env, "LOG_LEVEL": "WARNING"}))
    headers = {"X-Tenant": bench.info.slug}
    path = f"/api/v1/courses/{course}"

    def timed(fn: Callable[[], Any], method: str) -> float:
        # A path of the API, so the tenant hooks of its blueprint run.
        with app.test_request_context(path, method=method, headers=headers):
            app.preprocess_request()
            started = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - started
            db.session.rollback()
        return elapsed

    roster_schema = EnrollmentPageSchema()

    def roster_items(rows: list[Any], orm: bool) -> dict[str, Any]:
        items = []
        for r in rows:
            e = r[0] if orm else r
            user = e.user if orm else {"id": r.user_id, "name": r.name, "email": r.email}
            items.append(
                {
                    "id": e.id,
                    "status": e.status,
                    "enrolled_at": e.enrolled_at,
                    "user": user,
                    "progress": {
                        "completed_lessons": r.completed_lessons,
                        "progress_percentage": float(r.progress_percentage),
                        "last_activity": r.last_activity,
                    },
                }
            )
        return roster_schema.dump({"items": items, "next_cursor": None})

    pairs: dict[str, tuple[str, Callable[[], Any], Callable[[], Any]]] = {
        "course detail (load + dump)": (
            "GET",
            lambda: _DETAIL.dump(learning_detail(course)),
            lambda: _DETAIL.dump(core_course_detail(course)),
        ),
        "roster page of 50 (load + dump)": (
            "GET",
            lambda: roster_items(orm_roster(course, total_lessons, 50), True),
            lambda: roster_items(
                learning.course_enrollments(course, total_lessons, 50, None, None), False
            ),
        ),
        "course update (rolled back)": (
            "PATCH",
            lambda: orm_update_course(course, "Bench title"),
            lambda: core_update_course(course, "Bench title"),
        ),
    }
    rows = []
    for name, (method, orm, core) in pairs.items():
        for fn in (orm, core):  # warm: compiled SQL, prepared plans
            for _ in range(20):
                timed(fn, method)
        blocks: dict[str, list[float]] = {"orm": [], "core": []}
        for _ in range(rounds):
            for label, fn in (("orm", orm), ("core", core)):
                per_call = [timed(fn, method) for _ in range(BLOCK)]
                blocks[label].append(statistics.median(per_call) * 1e6)
        o, c = statistics.median(blocks["orm"]), statistics.median(blocks["core"])
        rows.append([name, f"{c:.0f}", f"{o:.0f}", f"{(o / c - 1) * 100:+.1f} %"])
    title = (
        f"## in-process, µs per call (median of {rounds} blocks of {BLOCK}, ORM and Core"
        " alternating; course with the most enrollments)"
    )
    return f"\n{title}\n" + load.table(["path", "core", "orm", "orm vs core"], rows)


def learning_detail(course_id: int) -> Any:
    from lms_app.catalog.queries import course_detail_for_staff

    return course_detail_for_staff(course_id)


# --- 2. end to end ------------------------------------------------------------------


def core_worktree(rev: str) -> Path:
    root = Path(__file__).resolve().parents[1]
    path = Path(f"/tmp/lms_core_{rev}")
    if not (path / "wsgi.py").exists():
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", str(path), rev],
            check=True,
            capture_output=True,
        )
    return path


def busiest_course(url: str, schema: str) -> tuple[int, int, int, int]:
    """The course with the most enrollments: (id, total_lessons, instructor, a lesson)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            pgsql.SQL(
                "SELECT c.id, c.total_lessons, c.instructor_id,"
                " (SELECT min(l.id) FROM {l} l WHERE l.course_id = c.id)"
                " FROM {c} c WHERE c.instructor_id IS NOT NULL"
                " ORDER BY (SELECT count(*) FROM {e} e WHERE e.course_id = c.id) DESC, c.id"
                " LIMIT 1"
            ).format(
                c=pgsql.Identifier(schema, "courses"),
                e=pgsql.Identifier(schema, "enrollments"),
                l=pgsql.Identifier(schema, "lessons"),
            )
        )
        found = cur.fetchone()
    conn.close()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = ab.arguments(__doc__.splitlines()[0])
    parser.add_argument("--core-rev", default=CORE_REV)
    parser.add_argument("--blocks", type=int, default=7, help="in-process blocks per version")
    args = parser.parse_args(argv)
    bench = ab.prepare(args)
    course, total_lessons, instructor, lesson = busiest_course(bench.url, bench.info.schema)
    print(in_process(bench, course, total_lessons, args.blocks))

    token = load.mint_tokens(bench.env, bench.info.slug, bench.info.schema, [instructor])
    headers = {"X-Tenant": bench.info.slug, "Authorization": f"Bearer {token[instructor]}"}
    paths = {
        "roster (Core both, + audit)": f"{load.API}/courses/{course}/enrollments",
        "course detail (cached)": f"{load.API}/courses/{course}",
        "lesson (Core, + ETag)": f"{load.API}/lessons/{lesson}",
        "user detail (ORM both)": f"{load.API}/users/{instructor}",
    }
    configs = {"core": {}, "orm": {}}
    roots = {"core": core_worktree(args.core_rev)}
    with ExitStack() as stack:
        servers = ab.serve_both(stack, bench.env, configs, "orm_bench", roots=roots)
        for label, server in servers.items():
            # Each server runs its own checkout's code: only the ORM build sends ETags.
            request = urllib.request.Request(
                server.base + paths["course detail (cached)"], headers=headers
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                tagged = answer.headers.get("ETag") is not None
            if tagged != (label == "orm"):
                raise RuntimeError(f"the {label} server does not run the {label} build")
        print(ab.compare(servers, paths, headers, args.rounds, args.seconds))
    print(f"load average at end: {api_bench.load_now()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
