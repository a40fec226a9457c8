"""One demo school, filled with believable data in a few seconds.

`seed_demo()` makes sure the public registry is migrated and the demo tenant exists,
then — unless the tenant already has courses — plans every row in Python
(`random.Random(42)`, so the same arguments give the same school; timestamps are
relative to `now`) and writes them with Core bulk inserts on a connection carrying
the tenant's `schema_translate_map`, all in one transaction. An interrupted seed
leaves nothing behind and can simply be run again; a second run finds the courses
and does nothing.

Invariants the rest of the app relies on (and tests/test_demo_seed.py checks):
`courses.total_lessons` is the number of published lessons; enrollments exist only
for published courses; lesson progress exists only for published lessons of
courses the user is enrolled in (status active or completed, never dropped), with
`course_id` copied from the lesson and `completed_at` set exactly when progress is
100; every timestamp lies between the rows it depends on and `now`.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, exists, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from tqdm import tqdm

from lms_app.accounts.models import User
from lms_app.accounts.passwords import hash_password
from lms_app.catalog.models import Category, Course, Lesson
from lms_app.db.engines import translate_map
from lms_app.learning.models import Enrollment, LessonProgress, UserActivity
from lms_app.tenancy.context import TenantInfo
from lms_app.tenancy.migrations import migrate_tenant, tenant_head, tenant_revisions, upgrade_public
from lms_app.tenancy.provisioning import NewTenant, TenantExists, create_tenant
from lms_app.tenancy.registry import load_tenant

DEMO_SLUG = "demo"
DEMO_NAME = "Demo School"
DEMO_EMAIL_DOMAIN = "demo.school"
DEMO_ADMIN_EMAIL = f"admin@{DEMO_EMAIL_DOMAIN}"
DEMO_ADMIN_PASSWORD = "demo-admin-pass"
DEMO_INSTRUCTOR_PASSWORD = "demo-instructor-pass"
DEMO_STUDENT_PASSWORD = "demo-student-pass"

DEFAULT_STUDENTS = 1000
DEFAULT_COURSES = 200
INSTRUCTORS = 10
RANDOM_SEED = 42
SCHOOL_AGE_DAYS = 730

# pg_advisory_xact_lock(class, tenant id): two seeds of one tenant run one after the other.
ADVISORY_LOCK_CLASS = 0x5EED

STEPS = (
    "migrate",
    "tenant",
    "plan",
    "users",
    "categories",
    "courses",
    "lessons",
    "enrollments",
    "progress",
    "activity",
    "commit",
)


def student_email(n: int) -> str:
    return f"student{n}@{DEMO_EMAIL_DOMAIN}"


def instructor_email(n: int) -> str:
    return f"instructor{n}@{DEMO_EMAIL_DOMAIN}"


# --------------------------------------------------------------------------- words

FIRST_NAMES = (
    "Amara", "Ben", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jonas",
    "Kemi", "Liam", "Maya", "Nikolai", "Olivia", "Pedro", "Quinn", "Rosa", "Samir", "Tara",
    "Umar", "Valentina", "Wei", "Ximena", "Yusuf", "Zoe", "Aisha", "Bruno", "Camille", "Dev",
    "Emeka", "Freya", "Gabriel", "Hana", "Ivan", "Julia", "Kofi", "Lena", "Mateo", "Noor",
)  # fmt: skip
LAST_NAMES = (
    "Adeyemi", "Becker", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad",
    "Ito", "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Patel",
    "Quintero", "Rossi", "Schmidt", "Tanaka", "Usman", "Varga", "Wong", "Xu", "Yilmaz",
    "Zhang", "Novak", "Silva", "Murphy", "Kim", "Costa", "Horvat", "Ivanova", "Larsen",
)  # fmt: skip

CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Programming", (
        "Python", "JavaScript", "TypeScript", "Go", "Rust", "SQL", "Java", "Kotlin",
        "Django", "Flask", "React", "Node.js", "Git", "Testing", "Algorithms",
    )),
    ("Data Science", (
        "Machine Learning", "Statistics", "pandas", "Data Visualization", "Deep Learning",
        "Natural Language Processing", "Time Series", "A/B Testing", "Feature Engineering",
    )),
    ("Design", (
        "UX Research", "UI Design", "Typography", "Figma", "Design Systems", "Color Theory",
        "Accessibility", "Motion Design", "Prototyping",
    )),
    ("Business", (
        "Project Management", "Negotiation", "Leadership", "Product Management",
        "Accounting", "Startup Finance", "Operations", "Business Strategy",
    )),
    ("Marketing", (
        "SEO", "Content Marketing", "Email Marketing", "Social Media", "Copywriting",
        "Brand Strategy", "Growth Analytics", "Paid Search",
    )),
    ("Languages", (
        "Spanish", "French", "German", "Japanese", "Italian", "Mandarin", "Portuguese",
        "English Grammar",
    )),
    ("Music", (
        "Guitar", "Piano", "Music Theory", "Songwriting", "Music Production", "Singing",
        "Ear Training", "Drumming",
    )),
    ("Photography", (
        "Portrait Photography", "Lighting", "Photo Editing", "Landscape Photography",
        "Street Photography", "Lightroom", "Composition", "Film Photography",
    )),
)  # fmt: skip

# (template, difficulty); None lets the course pick one at random.
TITLE_TEMPLATES: tuple[tuple[str, str | None], ...] = (
    ("Introduction to {t}", "beginner"),
    ("{t} for Beginners", "beginner"),
    ("{t} Fundamentals", "beginner"),
    ("{t} Essentials", "beginner"),
    ("Practical {t}", None),
    ("Hands-on {t}", None),
    ("{t} in 30 Days", None),
    ("The Complete {t} Course", None),
    ("Modern {t}", "intermediate"),
    ("Applied {t}", "intermediate"),
    ("{t} Workshop", "intermediate"),
    ("{t}: From Zero to Confident", "beginner"),
    ("Advanced {t}", "advanced"),
    ("Mastering {t}", "advanced"),
    ("{t} Masterclass", "advanced"),
)

OPENINGS = (
    "Learn {t} step by step with real-world examples.",
    "A hands-on course that takes you through {t} from the ground up.",
    "Build confidence with {t} through short lessons and practical exercises.",
    "Everything you need to get productive with {t}, explained clearly.",
    "A structured path through {t}, one small win at a time.",
)
SKILLS = (
    "work through realistic projects",
    "understand the core ideas behind {t}",
    "avoid the mistakes most newcomers make",
    "build a piece for your portfolio",
    "learn the vocabulary professionals use",
    "practise with guided exercises",
    "review your work against clear checklists",
    "get feedback-ready habits that last",
)
CLOSINGS = {
    "beginner": "No prior experience required.",
    "intermediate": "Some familiarity with the basics will help.",
    "advanced": "Aimed at learners who already use {t} regularly.",
}

LESSON_TITLES = (
    "{t} basics",
    "Core concepts of {t}",
    "Setting up your workspace",
    "Working with real examples",
    "Common {t} patterns",
    "Hands-on exercise",
    "Troubleshooting and debugging",
    "Best practices for {t}",
    "Case study",
    "Going further with {t}",
    "Tools of the trade",
    "Quiz and review",
    "Small project: part 1",
    "Small project: part 2",
    "Feedback and iteration",
)
FOCUSES = (
    "the building blocks",
    "a small, complete example",
    "the vocabulary you will meet again and again",
    "how the pieces fit together",
    "the trade-offs behind each choice",
    "a realistic scenario from start to finish",
)
ACTIONS = (
    "sketching what you want to achieve",
    "reading the example slowly once",
    "setting up a clean workspace",
    "writing down the questions you have",
    "repeating the exercise from memory",
)
MISTAKES = (
    "rushing past the fundamentals",
    "copying an example without understanding it",
    "skipping the practice session",
    "trying to change too much at once",
    "ignoring small warning signs",
)
HABITS = (
    "keep a short log of what they tried",
    "review their work a day later",
    "break large tasks into small steps",
    "ask for feedback early",
    "practise a little every day",
)
SENTENCES = (
    "In this lesson we look at {focus} and why it matters when working with {t}.",
    "Start by {action}; it makes the following steps much easier.",
    "A common mistake is {mistake}, so take a moment to check your work.",
    "Professionals often {habit}, and you will see why as the course goes on.",
    "Try the exercise at the end before moving on to the next lesson.",
    "Keep notes of what surprised you: they help when you review {t} later.",
    "We will come back to {focus} in a later lesson, so do not worry about every detail.",
    "By the end you should be able to explain {focus} in your own words.",
)


# --------------------------------------------------------------------------- plan


@dataclass
class Plan:
    """Every row to write, with references by position until ids exist."""

    instructors: list[dict[str, Any]] = field(default_factory=list)
    students: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    # "_category", "_instructor": positions; replaced by ids on insert.
    courses: list[dict[str, Any]] = field(default_factory=list)
    # "_course": position of the course.
    lessons: list[dict[str, Any]] = field(default_factory=list)
    # "_student", "_course" positions.
    enrollments: list[dict[str, Any]] = field(default_factory=list)
    # "_student", "_course", "_lesson" positions.
    progress: list[dict[str, Any]] = field(default_factory=list)
    # "_student", "_course", "_lesson" positions (course/lesson may be None).
    activity: list[dict[str, Any]] = field(default_factory=list)


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    if end <= start:
        return end
    return start + (end - start) * rng.random()


def _slugify(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _content(rng: random.Random, topic: str) -> str:
    paragraphs = []
    for _ in range(rng.randint(3, 5)):
        sentences = [
            sentence.format(
                t=topic,
                focus=rng.choice(FOCUSES),
                action=rng.choice(ACTIONS),
                mistake=rng.choice(MISTAKES),
                habit=rng.choice(HABITS),
            )
            for sentence in rng.sample(SENTENCES, rng.randint(3, 5))
        ]
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def build_plan(
    students: int, courses: int, now: datetime, student_hash: str, instructor_hash: str
) -> Plan:
    rng = random.Random(RANDOM_SEED)
    plan = Plan()
    opened = now - timedelta(days=SCHOOL_AGE_DAYS)

    # Users: numbered in the order they joined, so student1 is the oldest account.
    joined = sorted(
        _between(rng, opened + timedelta(days=20), now - timedelta(hours=6))
        for _ in range(students)
    )
    for n in range(1, INSTRUCTORS + 1):
        at = _between(rng, opened, opened + timedelta(days=15))
        plan.instructors.append(
            dict(email=instructor_email(n), name=_name(rng), role="instructor",
                 password_hash=instructor_hash, is_active=True, created_at=at, updated_at=at)
        )  # fmt: skip
    for n, at in enumerate(joined, start=1):
        plan.students.append(
            dict(email=student_email(n), name=_name(rng), role="student",
                 password_hash=student_hash, is_active=n == 1 or rng.random() > 0.02,
                 created_at=at, updated_at=at)
        )  # fmt: skip

    for name, _topics in CATEGORIES:
        plan.categories.append(dict(name=name, slug=_slugify(name), created_at=opened))

    # Courses: distinct (topic, template) pairs, oldest first so ids follow time.
    combos = [
        (ci, topic, template)
        for ci, (_name_, topics) in enumerate(CATEGORIES)
        for topic in topics
        for template in TITLE_TEMPLATES
    ]
    rng.shuffle(combos)
    created = sorted(
        _between(rng, opened + timedelta(days=20), now - timedelta(days=2)) for _ in range(courses)
    )
    # A few drafts and a few archived courses; the rest are in the catalog.
    hidden = max(1, round(courses * 0.05)) if courses >= 5 else 0
    states = ["draft"] * hidden + ["archived"] * hidden
    states += ["live"] * (courses - len(states))
    rng.shuffle(states)
    for i in range(courses):
        ci, topic, (template, difficulty) = combos[i % len(combos)]
        title = template.format(t=topic)
        if i >= len(combos):
            title += f" (Part {i // len(combos) + 1})"
        difficulty = difficulty or rng.choice(("beginner", "intermediate", "advanced"))
        skills = rng.sample(SKILLS, 2)
        description = " ".join(
            (
                rng.choice(OPENINGS),
                f"You will {skills[0]} and {skills[1]}.",
                CLOSINGS[difficulty],
            )
        ).format(t=topic)
        state = states[i]
        at = created[i]
        n_lessons = rng.randint(5, 15)
        published = 0
        titles = rng.sample(LESSON_TITLES, n_lessons - 2)
        for k in range(n_lessons):
            if k == 0:
                lesson_title = "Welcome and course overview"
            elif k == n_lessons - 1:
                lesson_title = "Wrap-up and next steps"
            else:
                lesson_title = titles[k - 1].format(t=topic)
                lesson_title = lesson_title[0].upper() + lesson_title[1:]
            # Drafts are half written; a catalog course always shows its first lesson.
            draft = state == "draft"
            is_published = rng.random() < 0.6 if draft else k == 0 or rng.random() > 0.08
            published += is_published
            lesson_at = min(at + timedelta(days=k * rng.uniform(0.0, 1.5)), now)
            plan.lessons.append(
                dict(_course=i, title=lesson_title, content=_content(rng, topic),
                     order_index=k + 1, is_published=is_published,
                     created_at=lesson_at, updated_at=lesson_at)
            )  # fmt: skip
        plan.courses.append(
            dict(_category=ci, _instructor=rng.randrange(INSTRUCTORS), title=title,
                 description=description, difficulty_level=difficulty,
                 estimated_hours=max(1, round(published * rng.uniform(0.5, 1.5))),
                 thumbnail_url=(None if rng.random() < 0.1
                                else f"https://picsum.photos/seed/demo-course-{i + 1}/640/360"),
                 total_lessons=published, is_published=state != "draft",
                 is_archived=state == "archived", created_at=at,
                 updated_at=_between(rng, at, now))
        )  # fmt: skip

    _plan_learning(rng, plan, now)
    return plan


def _plan_learning(rng: random.Random, plan: Plan, now: datetime) -> None:
    """Enrollments, lesson progress and the activity log that goes with them."""
    published_lessons: dict[int, list[int]] = {}
    for pos, lesson in enumerate(plan.lessons):
        if lesson["is_published"]:
            published_lessons.setdefault(lesson["_course"], []).append(pos)
    enrollable = [i for i, c in enumerate(plan.courses) if c["is_published"]]
    # Some courses are far more popular than others; archived ones had fewer learners.
    ranks = list(range(len(enrollable)))
    rng.shuffle(ranks)
    weights = [
        (0.5 if plan.courses[c]["is_archived"] else 1.0) / (rank + 5) ** 0.8
        for c, rank in zip(enrollable, ranks, strict=True)
    ]

    activity = plan.activity
    for s, student in enumerate(plan.students):
        k = min(rng.randint(5, 10), len(enrollable))
        # Weighted sampling without replacement (Efraimidis-Spirakis keys).
        keyed = sorted(
            ((rng.random() ** (1.0 / w), c) for c, w in zip(enrollable, weights, strict=True)),
            reverse=True,
        )
        for _key, c in keyed[:k]:
            course = plan.courses[c]
            enrolled_at = _between(rng, max(student["created_at"], course["created_at"]), now)
            activity.append(
                dict(_student=s, _course=c, _lesson=None, activity_type="enrolled",
                     occurred_at=enrolled_at)
            )  # fmt: skip
            lessons = published_lessons.get(c, [])
            roll = rng.random()
            if roll < 0.10:
                dropped_at = _between(rng, enrolled_at, now)
                plan.enrollments.append(
                    dict(_student=s, _course=c, status="dropped", enrolled_at=enrolled_at,
                         updated_at=dropped_at)
                )  # fmt: skip
                activity.append(
                    dict(_student=s, _course=c, _lesson=None, activity_type="dropped",
                         occurred_at=dropped_at)
                )  # fmt: skip
                continue
            # (lesson position, percentage) in course order.
            steps: list[tuple[int, int]] = []
            if roll < 0.22 or not lessons:
                pass  # enrolled, not started yet
            elif roll < 0.40:
                steps = [(pos, 100) for pos in lessons]
            else:
                done = rng.randrange(len(lessons))
                steps = [(pos, 100) for pos in lessons[:done]]
                if rng.random() < 0.8:
                    steps.append((lessons[done], rng.choice((0, *range(5, 100, 5)))))
            times = sorted(_between(rng, enrolled_at, now) for _ in steps)
            for (pos, pct), at in zip(steps, times, strict=True):
                full = rng.randint(240, 2700)
                plan.progress.append(
                    dict(_student=s, _course=c, _lesson=pos, progress_percentage=pct,
                         time_spent=full if pct == 100 else full * pct // 100 + rng.randint(5, 90),
                         completed_at=at if pct == 100 else None, updated_at=at)
                )  # fmt: skip
                activity.append(
                    dict(_student=s, _course=c, _lesson=pos, occurred_at=at,
                         activity_type="lesson_completed" if pct == 100 else "lesson_progress")
                )  # fmt: skip
            finished = bool(steps) and len(steps) == len(lessons) and steps[-1][1] == 100
            if finished:
                activity.append(
                    dict(_student=s, _course=c, _lesson=None, activity_type="course_completed",
                         occurred_at=times[-1])
                )  # fmt: skip
            plan.enrollments.append(
                dict(_student=s, _course=c, status="completed" if finished else "active",
                     enrolled_at=enrolled_at, updated_at=times[-1] if times else enrolled_at)
            )  # fmt: skip
    # Append-only log in time order: what BRIN on occurred_at expects.
    activity.sort(key=lambda a: a["occurred_at"])


# --------------------------------------------------------------------------- writes


@dataclass
class SeedReport:
    tenant: TenantInfo
    created_tenant: bool
    already_seeded: bool
    counts: dict[str, int]
    seconds: float


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _insert_returning_ids(conn: Connection, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    if not rows:
        return []
    stmt = insert(model).returning(model.id, sort_by_parameter_order=True)
    return list(conn.execute(stmt, rows).scalars())


def _bulk_insert(conn: Connection, model: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(model), rows)


def write_plan(conn: Connection, plan: Plan, step: Any) -> None:
    """Insert the plan; `conn` carries the tenant's schema_translate_map."""
    step("users")
    users = plan.instructors + plan.students
    if users:
        conn.execute(pg_insert(User).on_conflict_do_nothing(index_elements=[User.email]), users)
    emails = [u["email"] for u in users]
    by_email = dict(conn.execute(select(User.email, User.id).where(User.email.in_(emails))).all())
    instructor_ids = [by_email[u["email"]] for u in plan.instructors]
    student_ids = [by_email[u["email"]] for u in plan.students]

    step("categories")
    # Categories are few; a leftover with the same slug is reused rather than duplicated.
    conn.execute(
        pg_insert(Category).on_conflict_do_nothing(index_elements=[Category.slug]),
        plan.categories,
    )
    by_slug = dict(
        conn.execute(
            select(Category.slug, Category.id).where(
                Category.slug.in_([c["slug"] for c in plan.categories])
            )
        ).all()
    )
    category_ids = [by_slug[c["slug"]] for c in plan.categories]

    step("courses")
    course_ids = _insert_returning_ids(
        conn,
        Course,
        [
            _public(c)
            | {
                "category_id": category_ids[c["_category"]],
                "instructor_id": instructor_ids[c["_instructor"]],
            }
            for c in plan.courses
        ],
    )

    step("lessons")
    lesson_ids = _insert_returning_ids(
        conn,
        Lesson,
        [_public(lesson) | {"course_id": course_ids[lesson["_course"]]} for lesson in plan.lessons],
    )

    def refs(row: dict[str, Any]) -> dict[str, Any]:
        out = _public(row) | {"user_id": student_ids[row["_student"]]}
        if "_course" in row:
            out["course_id"] = None if row["_course"] is None else course_ids[row["_course"]]
        if "_lesson" in row:
            out["lesson_id"] = None if row["_lesson"] is None else lesson_ids[row["_lesson"]]
        return out

    step("enrollments")
    _bulk_insert(conn, Enrollment, [refs(e) for e in plan.enrollments])
    step("progress")
    _bulk_insert(conn, LessonProgress, [refs(p) for p in plan.progress])
    step("activity")
    _bulk_insert(conn, UserActivity, [refs(a) for a in plan.activity])


def tenant_counts(engine: Engine, schema: str) -> dict[str, int]:
    """Row counts of the seeded tables, in one statement."""
    models = {
        "users": User,
        "categories": Category,
        "courses": Course,
        "lessons": Lesson,
        "enrollments": Enrollment,
        "lesson_progress": LessonProgress,
        "user_activity": UserActivity,
    }
    stmt = select(
        *(
            select(func.count()).select_from(model).scalar_subquery().label(name)
            for name, model in models.items()
        )
    )
    with engine.connect() as conn:
        conn = conn.execution_options(schema_translate_map=translate_map(schema))
        return dict(conn.execute(stmt).one()._mapping)


def _has_courses(conn: Connection) -> bool:
    return bool(conn.execute(select(exists().select_from(Course))).scalar())


def ensure_tenant(engine: Engine, slug: str) -> tuple[TenantInfo, bool]:
    """The tenant `slug` at the head revision, created if missing; (tenant, created)."""
    tenant = load_tenant(engine, slug)
    if tenant is None:
        try:
            new = NewTenant(slug, DEMO_NAME, DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD, "Demo Admin")
            return create_tenant(engine, new), True
        except TenantExists:  # created concurrently
            tenant = load_tenant(engine, slug)
            assert tenant is not None
    schema = tenant.schema_name
    with engine.connect() as conn:
        if tenant_revisions(conn, [schema])[schema] != tenant_head():
            migrate_tenant(conn, schema)
            conn.commit()
    return tenant, False


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    bar = tqdm(total=len(STEPS), desc="seed-demo", unit="step", file=sys.stderr,
               disable=not enabled, leave=enabled)  # fmt: skip
    done: list[str] = []

    def step(name: str) -> None:
        if done:
            bar.update(1)
        done.append(name)
        bar.set_postfix_str(name)

    try:
        yield step
        bar.update(len(STEPS) - bar.n)
    finally:
        bar.close()


def seed_demo(
    engine: Engine,
    slug: str = DEMO_SLUG,
    students: int = DEFAULT_STUDENTS,
    courses: int = DEFAULT_COURSES,
    *,
    now: datetime | None = None,
    progress: bool = False,
) -> SeedReport:
    """Create (if needed) and fill the demo tenant; a no-op once it has courses."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    with _progress_bar(progress) as step:
        step("migrate")
        upgrade_public(engine)
        step("tenant")
        tenant, created = ensure_tenant(engine, slug)
        schema = tenant.schema_name
        tmap = translate_map(schema)

        with engine.connect() as conn:
            seeded = _has_courses(conn.execution_options(schema_translate_map=tmap))
        if not seeded:
            step("plan")
            # One scrypt hash per role, shared by every demo account of that role:
            # hashing 1,000 passwords one by one would take most of a minute.
            plan = build_plan(
                students,
                courses,
                now,
                student_hash=hash_password(DEMO_STUDENT_PASSWORD),
                instructor_hash=hash_password(DEMO_INSTRUCTOR_PASSWORD),
            )
            with engine.begin() as conn:
                conn = conn.execution_options(schema_translate_map=tmap)
                conn.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_CLASS, tenant.id)))
                seeded = _has_courses(conn)  # a concurrent seed may have won the race
                if not seeded:
                    write_plan(conn, plan, step)
                    step("commit")
    return SeedReport(
        tenant=tenant,
        created_tenant=created,
        already_seeded=seeded,
        counts=tenant_counts(engine, schema),
        seconds=time.perf_counter() - started,
    )
