"""Load: simulated learners against lms_app started as the Procfile starts it, next to the peers.

Not a test. Issue 9, items 1 and 2. One run:

1. Builds (or with --reuse keeps) the benchmark database with bench/data.py.
2. Starts lms_app exactly as the Procfile's `web:` line does (`gunicorn -c
   config/gunicorn.conf.py wsgi:app` from the project root, the config's defaults,
   only DATABASE_URL, REDIS_URL, SECRET_KEY, PLATFORM_API_KEY, LMS_ENV=production
   and PORT set, plus any --env KEY=VALUE), and the peers `peer_app:app` and
   `orm_peer:app` from PEERS_DIR under `gunicorn -w 2` on the same database.
3. Tokens: 30 learners log in through POST /api/v1/auth/token (login p50/p95); the
   others' tokens are minted with the app's own issue_token() (a 130 ms scrypt hash
   per login and a 60/minute limit per address make 2,000 API logins impossible and
   unrepresentative). A minted token must get 200 on /api/v1/me before anything runs.
4. The ladder: for each target (lms_app, peer_app, orm_peer, and peer_app's /hello)
   and each step (default 250, 500, 1,000, 2,000 learners), every learner a distinct
   student and one asyncio coroutine on raw streams: request, read the whole answer,
   think 1-3 s, again. A mix of catalog pages (following next_cursor now and then),
   my courses, course detail, lesson, course progress, search, PUT lesson progress and
   self-enrollment (table MIX below); the peers get the same reads, their share of
   writes replaced by reads in proportion. --ramp seconds are not counted, then
   --seconds are. Requests, req/s, p50/p95/p99/max ms, errors by kind and the
   generator's own CPU seconds per step; p99 per endpoint for lms_app; lms_app's
   cache counters (GET /platform/cache-stats) after its ladder; with --py-spy STEP,
   py-spy profiles of every worker during that step.
5. wrk -t2 -c32 on every read endpoint of lms_app and of both peers with the same
   user, course and lesson ids (a 4 s untimed warm-up of each URL first), and
   /healthz against /hello.
6. A PASS/FAIL table of the issue's targets; exit status 1 if any FAIL.

    PEERS_DIR=/work/shared/peers .venv/bin/python bench/load.py --reuse
    .venv/bin/python bench/load.py --reuse --steps 100 --seconds 8 --wrk-seconds 3   # smoke
    .venv/bin/python bench/load.py --reuse --targets lms_app --py-spy 1000 --no-wrk

The full default run takes about 15 minutes. Self-enrollments made by the run are
deleted at the end (bench/data.py's --reuse wants exact enrollment counts); lesson
progress written by the run stays, as with api_bench's batches. The Redis database
of --redis-url is flushed at the start.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import os
import random
import re
import resource
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import psycopg2  # noqa: E402
from psycopg2 import sql as pgsql  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench import api_bench  # noqa: E402
from bench import data as bench_data  # noqa: E402

# --------------------------------------------------------------------------- the mix

# Share of lms_app's requests per kind, in percent: close to how learners use the site.
MIX: dict[str, float] = {
    "catalog": 20.0,  # first page, and the next page or two (CATALOG_FOLLOW)
    "me_courses": 12.0,
    "course": 15.0,  # course detail with its outline
    "lesson": 20.0,
    "progress": 15.0,  # course progress
    "search": 7.0,
    "put_progress": 10.0,  # a write: PUT /lessons/<id>/progress, rising values
    "enroll": 1.0,  # a write: POST /courses/<id>/enroll in a course not yet taken
}
WRITES = ("put_progress", "enroll")
# After a catalog page with a next_cursor: the chance that the learner's next request
# is the next page (after page 1, after page 2). Expected pages per visit:
# 1 + 0.3 + 0.3 * 0.5 = 1.45; the catalog's draw weight is divided by that, so the
# catalog stays at MIX["catalog"] % of requests.
CATALOG_FOLLOW = (0.3, 0.5)
# Plain words a learner types (from api_bench's queries: rare to ~44 % of lessons,
# and one with no hit), without search operators.
SEARCH_TERMS = tuple(
    q for q in api_bench.SEARCH_QUERIES if not any(op in f" {q} " for op in ('"', " or ", " -"))
)
THINK_S = (1.0, 3.0)  # uniform, between the end of one answer and the next request
START_SPREAD_S = 2.0  # learners start uniformly over the first seconds
TIMEOUT_S = 10.0  # a request not answered in full by then is an error
LOGIN_SAMPLE = 30  # learners logged in through the API; the others' tokens are minted
PROGRESS_STEP = (5, 25)  # a PUT raises the lesson's progress by this much (capped at 100)

TARGETS = ("lms_app", "peer_app", "orm_peer", "hello")
DEFAULT_STEPS = "250,500,1000,2000"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
DEFAULT_SEED = 9009
API = "/api/v1"
TENANT_HEADER = "X-Tenant"
WRK_WARMUP_S = 4
WRK_CONNECTIONS = 32
PEER_WORKERS = 2

# Targets (issue 9).
P99_AT_1000_MS = 100.0
VS_RAW_MIN = 0.6
VS_ORM_MIN = 1.5
HEALTHZ_VS_HELLO_MIN = 0.8

PEER_APPS = {"peer_app": ("peer_app:app", "/hello"), "orm_peer": ("orm_peer:app", "/course/1")}
TARGET_SERVER = {"lms_app": "lms_app", "peer_app": "peer_app", "orm_peer": "orm_peer"}
TARGET_SERVER["hello"] = "peer_app"


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    command: list[str]
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        """The gunicorn master's children (its workers) now."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []


@contextmanager
def serve(
    name: str, command: list[str], cwd: Path, env: dict[str, str], probe: str, port: int
) -> Iterator[Server]:
    """Run a gunicorn until the block ends (SIGTERM); wait for `probe` to answer 200."""
    log_path = Path(f"/tmp/load_{name}_{port}.log")
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        server = Server(name, command, proc, port, log_path)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http_get(port, probe)[0] == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start; see {log_path}")
                time.sleep(0.2)
            yield server
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET", body=None
) -> tuple[int, bytes]:
    """One request on a fresh connection (setup and checks, not timed load)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        data = None if body is None else json.dumps(body)
        hdrs = dict(headers or {})
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def procfile_web_command() -> list[str]:
    """The Procfile's `web:` command, with the venv's gunicorn."""
    for line in (PROJECT_ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            argv = shlex.split(line.partition(":")[2])
            if argv[0] == "gunicorn":
                argv[0] = str(Path(sys.executable).with_name("gunicorn"))
            return argv
    raise RuntimeError("no web: line in the Procfile")


# --------------------------------------------------------------------------- learners


@dataclass(slots=True, eq=False)
class Learner:
    uid: int
    token: str
    courses: list[int]  # lms_app: active enrollments in open courses
    lessons: list[int]  # their published lessons
    progress: dict[int, int]  # lms_app lesson -> progress now (rises with each PUT)
    taken: set[int]  # every course the student has an enrollment in (any status)
    peer_courses: list[int]  # the same student in the peers' floor schema
    peer_lessons: list[int]
    rnd: random.Random
    lms_head: bytes = b""
    pending: tuple[int, int] = (0, 0)  # the write in flight: (lesson, percent) or (course, 0)
    cursor: str | None = None  # catalog page to follow on the next request
    depth: int = 0
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None


def pick_learners(url: str, schema: str, n: int, seed: int) -> list[Learner]:
    """`n` distinct students with courses and lessons both in the tenant and in `floor`.

    Ids 102..10,000 exist in both (floor users are 1..10,000); the same id is used
    for lms_app and for the peers, each with that student's own enrollments there.
    """
    rnd = random.Random(seed)
    first = bench_data.FIRST_STUDENT_ID
    pool = list(range(first, min(first + bench_data.N_STUDENTS, 10_001)))
    rnd.shuffle(pool)
    candidates = pool[: min(len(pool), n + n // 5 + 50)]
    lms = api_bench.load_students(url, schema, candidates)
    tbl = {t: pgsql.Identifier(schema, t) for t in ("enrollments", "lesson_progress")}
    floor: dict[int, tuple[list[int], list[int]]] = {u: ([], []) for u in candidates}
    taken: dict[int, set[int]] = {u: set() for u in candidates}
    progress: dict[int, dict[int, int]] = {u: {} for u in candidates}
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT e.user_id, e.course_id, array_agg(l.id ORDER BY l.id)"
            " FROM floor.enrollments e JOIN floor.courses c ON c.id = e.course_id"
            " JOIN floor.lessons l ON l.course_id = c.id AND l.is_published"
            " WHERE e.user_id = ANY(%s) AND c.is_published AND NOT c.is_archived"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            (candidates,),
        )
        for uid, cid, lessons in cur.fetchall():
            floor[uid][0].append(cid)
            floor[uid][1].extend(lessons)
        cur.execute(
            pgsql.SQL("SELECT user_id, course_id FROM {} WHERE user_id = ANY(%s)").format(
                tbl["enrollments"]
            ),
            (candidates,),
        )
        for uid, cid in cur.fetchall():
            taken[uid].add(cid)
        cur.execute(
            pgsql.SQL(
                "SELECT user_id, lesson_id, progress_percentage FROM {} WHERE user_id = ANY(%s)"
            ).format(tbl["lesson_progress"]),
            (candidates,),
        )
        for uid, lid, pct in cur.fetchall():
            progress[uid][lid] = pct
    conn.close()
    out: list[Learner] = []
    if n == 0:
        return out
    for uid in candidates:
        courses, lessons = lms[uid]
        if courses and lessons and floor[uid][0] and floor[uid][1]:
            mine = {lid: progress[uid].get(lid, 0) for lid in lessons}
            out.append(
                Learner(
                    uid,
                    "",
                    courses,
                    lessons,
                    mine,
                    taken[uid],
                    *floor[uid],
                    random.Random(rnd.random()),
                )
            )
        if len(out) == n:
            return out
    raise RuntimeError(f"only {len(out)} students with courses in both schemas; wanted {n}")


def open_courses(url: str, schema: str) -> list[int]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            pgsql.SQL(
                "SELECT id FROM {} WHERE is_published AND NOT is_archived ORDER BY id"
            ).format(pgsql.Identifier(schema, "courses"))
        )
        ids = [r[0] for r in cur.fetchall()]
    conn.close()
    return ids


def mint_tokens(env: dict[str, str], slug: str, schema: str, user_ids: list[int]) -> dict[int, str]:
    """Tokens issued by the app's own code (issue_token in an app context), no login.

    The app is built from the same settings as the server (same SECRET_KEY, same
    database), so its tokens are the ones a login would have returned.
    """
    from config.settings import Settings
    from lms_app import create_app
    from lms_app.accounts.auth import issue_token
    from lms_app.extensions import db
    from lms_app.tenancy.context import tenant_scope
    from lms_app.tenancy.registry import load_tenant

    app = create_app(Settings.from_env({**env, "LOG_LEVEL": "WARNING"}))
    url = make_url(env["DATABASE_URL"]).render_as_string(hide_password=False)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            pgsql.SQL("SELECT id, token_version FROM {} WHERE id = ANY(%s)").format(
                pgsql.Identifier(schema, "users")
            ),
            (user_ids,),
        )
        versions = dict(cur.fetchall())
    conn.close()
    with app.app_context():
        tenant = load_tenant(db.engine, slug)
        if tenant is None:
            raise RuntimeError(f"tenant {slug!r} not found")
        with tenant_scope(tenant):
            tokens = {uid: issue_token(uid, versions[uid])[0] for uid in user_ids}
        for engine in db.engines.values():
            engine.dispose()
    return tokens


def login_sample(port: int, slug: str, learners: list[Learner]) -> tuple[list[float], list[str]]:
    """Log `learners` in through the API, one after the other; ms per login, failures."""
    times, failures = [], []
    for lrn in tqdm(learners, desc=f"{'API logins':24}", unit="login", leave=False):
        body = {"email": bench_data.student_email(lrn.uid), "password": bench_data.PASSWORD}
        started = time.perf_counter()
        status, data = http_get(port, f"{API}/auth/token", {TENANT_HEADER: slug}, "POST", body)
        times.append((time.perf_counter() - started) * 1000)
        if status == 200:
            lrn.token = json.loads(data)["access_token"]
        else:
            failures.append(f"login {lrn.uid}: {status} {data[:200]!r}")
    return times, failures


def check_token(port: int, slug: str, lrn: Learner, how: str) -> None:
    headers = {TENANT_HEADER: slug, "Authorization": f"Bearer {lrn.token}"}
    status, data = http_get(port, f"{API}/me", headers)
    if status != 200 or json.loads(data).get("id") != lrn.uid:
        raise SystemExit(
            f"FATAL: a {how} token of user {lrn.uid} got {status} on {API}/me: {data[:300]!r}"
        )


# --------------------------------------------------------------------------- one step


@dataclass
class StepResult:
    target: str
    learners: int
    seconds: float
    ramp: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    outcomes: Counter = field(default_factory=Counter)  # (kind, "200"|"error:X") in window
    ramp_outcomes: Counter = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    cpu_s: float = 0.0  # this process, user + system
    sys_s: float = 0.0  # of which in the kernel (loopback TCP: connect, send, close)
    wall_s: float = 0.0

    @property
    def all_ms(self) -> list[float]:
        return [ms for values in self.latencies.values() for ms in values]

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    @property
    def responses(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def errors(self) -> int:
        return sum(n for (_, what), n in self.outcomes.items() if not what.startswith("2"))

    def error_kinds(self, outcomes: Counter | None = None) -> Counter:
        by: Counter = Counter()
        for (_, what), n in (self.outcomes if outcomes is None else outcomes).items():
            if not what.startswith("2"):
                by[what] += n
        return by


_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)")
_NEXT_CURSOR = re.compile(rb'"next_cursor":\s*"([^"]+)"')


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return b"".join(parts)
        parts.append(chunk[:-2])


async def exchange(lrn: Learner, port: int, request: bytes) -> tuple[int, bytes]:
    """Send one request on the learner's connection (opened if needed) and read it all."""
    if lrn.writer is None:
        lrn.reader, lrn.writer = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = lrn.reader, lrn.writer
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    close = b"\r\nconnection: close" in lower
    m = _LENGTH.search(lower)
    if m:
        body = await reader.readexactly(int(m.group(1)))
    elif b"\r\ntransfer-encoding: chunked" in lower:
        body = await _read_chunked(reader)
    else:
        body, close = await reader.read(), True
    if close:
        writer.close()
        lrn.writer = lrn.reader = None
    return status, body


def build_request(method: str, path: str, head: bytes, body: bytes | None = None) -> bytes:
    line = f"{method} {path} HTTP/1.1\r\n".encode()
    if body is None:
        extra = b"Content-Length: 0\r\n\r\n" if method != "GET" else b"\r\n"
        return line + head + extra
    return (
        line
        + head
        + b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class Plan:
    """What a learner asks next, per target."""

    def __init__(self, target: str, port: int, open_ids: list[int]) -> None:
        self.target = target
        self.open_ids = open_ids
        self.head = f"Host: 127.0.0.1:{port}\r\n".encode()
        if target == "lms_app":
            pages = 1 + CATALOG_FOLLOW[0] + CATALOG_FOLLOW[0] * CATALOG_FOLLOW[1]
            weights = {**MIX, "catalog": MIX["catalog"] / pages}
        elif target == "hello":
            weights = {"hello": 1.0}
        else:  # the peers serve no writes: their share goes to the reads in proportion
            weights = {k: v for k, v in MIX.items() if k not in WRITES}
        self.kinds = list(weights)
        total, self.cum = 0.0, []
        for k in self.kinds:
            total += weights[k]
            self.cum.append(total)

    def next(self, lrn: Learner) -> tuple[str, bytes]:
        rnd = lrn.rnd
        if self.target == "lms_app":
            return self._lms(lrn, rnd)
        kind = rnd.choices(self.kinds, cum_weights=self.cum)[0]
        u = lrn.uid
        if kind == "hello":
            path = "/hello"
        elif kind == "catalog":
            path = f"/catalog?u={u}"
        elif kind == "me_courses":
            path = f"/me_courses?u={u}"
        elif kind == "course":
            path = f"/course/{rnd.choice(lrn.peer_courses)}"
        elif kind == "lesson":
            path = f"/lesson/{rnd.choice(lrn.peer_lessons)}?u={u}"
        elif kind == "progress":
            path = f"/course_progress/{rnd.choice(lrn.peer_courses)}?u={u}"
        else:
            path = f"/search?q={quote(rnd.choice(SEARCH_TERMS))}"
        return kind, build_request("GET", path, self.head)

    def _lms(self, lrn: Learner, rnd) -> tuple[str, bytes]:
        head = self.head + lrn.lms_head
        if lrn.cursor is not None:
            cursor, lrn.cursor = lrn.cursor, None
            return "catalog_next", build_request(
                "GET", f"{API}/courses?limit=20&cursor={quote(cursor)}", head
            )
        kind = rnd.choices(self.kinds, cum_weights=self.cum)[0]
        if kind == "catalog":
            lrn.depth = 0
            path = f"{API}/courses?limit=20"
        elif kind == "me_courses":
            path = f"{API}/me/courses"
        elif kind == "course":
            path = f"{API}/courses/{rnd.choice(lrn.courses)}"
        elif kind == "lesson":
            path = f"{API}/lessons/{rnd.choice(lrn.lessons)}"
        elif kind == "progress":
            path = f"{API}/courses/{rnd.choice(lrn.courses)}/progress"
        elif kind == "search":
            path = f"{API}/search?q={quote(rnd.choice(SEARCH_TERMS))}"
        elif kind == "put_progress":
            unfinished = [lid for lid, pct in lrn.progress.items() if pct < 100]
            lid = rnd.choice(unfinished or lrn.lessons)
            pct = min(100, lrn.progress[lid] + rnd.randint(*PROGRESS_STEP))
            lrn.pending = (lid, pct)
            body = json.dumps({"progress_percentage": pct, "time_spent": rnd.randint(30, 600)})
            return kind, build_request("PUT", f"{API}/lessons/{lid}/progress", head, body.encode())
        else:  # enroll in an open course the student has never been in
            while True:
                cid = rnd.choice(self.open_ids)
                if cid not in lrn.taken:
                    break
            lrn.pending = (cid, 0)
            return kind, build_request("POST", f"{API}/courses/{cid}/enroll", head)
        return kind, build_request("GET", path, head)

    def after(self, lrn: Learner, kind: str, body: bytes) -> None:
        """Learner state from an answer: the cursor to follow, progress, enrollments."""
        if self.target != "lms_app":
            return
        if kind in ("catalog", "catalog_next"):
            follow = CATALOG_FOLLOW[lrn.depth] if lrn.depth < len(CATALOG_FOLLOW) else 0.0
            m = _NEXT_CURSOR.search(body)
            if m and lrn.rnd.random() < follow:
                lrn.cursor = m.group(1).decode()
                lrn.depth += 1
        elif kind == "put_progress":
            lid, percent = lrn.pending
            lrn.progress[lid] = max(lrn.progress[lid], percent)
        elif kind == "enroll":
            lrn.taken.add(lrn.pending[0])


async def run_step(
    target: str,
    port: int,
    learners: list[Learner],
    plan: Plan,
    ramp: float,
    seconds: float,
    created: list[tuple[int, int]],
    on_window: Callable[[], None] | None = None,
) -> StepResult:
    result = StepResult(target, len(learners), seconds, ramp)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    window = t0 + ramp
    end = window + seconds
    think_lo, think_hi = THINK_S
    lms = target == "lms_app"

    async def learner(lrn: Learner) -> None:
        rnd = lrn.rnd
        await asyncio.sleep(rnd.uniform(0, START_SPREAD_S))
        while True:
            kind, request = plan.next(lrn)
            started = loop.time()
            counted = started >= window
            outcomes = result.outcomes if counted else result.ramp_outcomes
            t = time.perf_counter()
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    status, body = await exchange(lrn, port, request)
            except Exception as exc:  # refused, reset, timed out: an error, not a latency
                if lrn.writer is not None:
                    lrn.writer.close()
                lrn.writer = lrn.reader = None
                errno = getattr(exc, "errno", None)
                outcomes[kind, f"error:{type(exc).__name__}" + (f"[{errno}]" if errno else "")] += 1
            else:
                if counted:
                    result.latencies[kind].append((time.perf_counter() - t) * 1000)
                outcomes[kind, str(status)] += 1
                if status >= 300:
                    examples = result.examples[kind, str(status)]
                    if len(examples) < 3:
                        line = request.split(b"\r\n", 1)[0].decode()
                        examples.append(f"{line} -> {body[:240]!r}")
                else:
                    plan.after(lrn, kind, body)
                    if lms and kind == "enroll" and status == 201:
                        created.append((lrn.uid, lrn.pending[0]))
            pause = rnd.uniform(think_lo, think_hi)
            if loop.time() + pause >= end:
                break
            await asyncio.sleep(pause)
        if lrn.writer is not None:
            lrn.writer.close()
            lrn.writer = lrn.reader = None

    async def ticker(bar: tqdm) -> None:
        fired = False
        while True:
            now = loop.time()
            if not fired and now >= window:
                fired = True
                if on_window is not None:
                    on_window()
            bar.update(int(min(ramp + seconds, now - t0)) - bar.n)
            bar.set_postfix(req=result.requests, err=result.errors, refresh=False)
            await asyncio.sleep(0.5)

    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    desc = f"{target} {len(learners)} learners"
    with tqdm(total=int(ramp + seconds), desc=f"{desc:24}", unit="s", leave=False) as bar:
        tick = asyncio.create_task(ticker(bar))
        await asyncio.gather(*(learner(lrn) for lrn in learners))
        tick.cancel()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.sys_s = usage.ru_stime - usage0.ru_stime
    result.cpu_s = usage.ru_utime - usage0.ru_utime + result.sys_s
    result.wall_s = time.perf_counter() - wall0
    return result


# --------------------------------------------------------------------------- py-spy


def start_py_spy(pids: list[int], seconds: float) -> list[tuple[subprocess.Popen, Path]]:
    binary = Path(sys.executable).with_name("py-spy")
    procs = []
    for pid in pids:
        out = Path(f"/tmp/load_pyspy_{pid}.txt")
        cmd = [str(binary), "record", "--format", "raw", "--rate", "100"]
        cmd += ["--duration", str(int(seconds)), "--pid", str(pid), "--output", str(out)]
        cmd += ["--nonblocking"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append((proc, out))
    return procs


_LINENO = re.compile(r":\d+\)$")


def py_spy_report(procs: list[tuple[subprocess.Popen, Path]], seconds: float, top: int = 25) -> str:
    lines = []
    leaf: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for proc, out in procs:
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0:
            lines.append(f"  py-spy {out}: exit {proc.returncode}: {err.strip()[-300:]}")
        if not out.exists():
            continue
        for raw in out.read_text().splitlines():
            stack, _, count = raw.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [_LINENO.sub(")", f) for f in stack.split(";")]
            total += n
            leaf[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
        lines.append(f"  raw: {out}")
    if not total:
        return "\n".join([*lines, "  no samples"])
    possible = int(100 * seconds * len(procs))
    lines.append(
        f"  {total:,} samples of {possible:,} possible ({len(procs)} workers x 100 Hz x "
        f"{seconds:g} s = {100 * total / possible:.0f}%): py-spy skips most idle waits; what "
        "is left of them shows as SyncWorker.wait (a worker waiting for a connection)"
    )
    for title, counts in (("own (leaf)", leaf), ("inclusive", inclusive)):
        lines.append(f"\n  top {top} by {title} samples:")
        for frame, n in counts.most_common(top):
            lines.append(f"  {100 * n / total:6.1f}%  {frame[:150]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- cache counters


def cache_counters(server: Server, platform_key: str) -> str:
    """Every worker's GET /platform/cache-stats, summed per namespace."""
    wanted = set(server.worker_pids())
    seen: dict[int, dict] = {}
    headers = {"Authorization": f"Bearer {platform_key}"}
    deadline = time.monotonic() + 5
    for _ in range(200):
        try:
            status, body = http_get(server.port, "/platform/cache-stats", headers)
        except OSError as exc:
            return f"cache counters: request failed ({exc})"
        if status == 404:
            return "cache counters: not available"
        if status != 200:
            return f"cache counters: {status} {body[:200]!r}"
        payload = json.loads(body)
        seen[int(payload["pid"])] = payload.get("namespaces", {})
        if wanted <= set(seen) or time.monotonic() > deadline:
            break
    missing = sorted(wanted - set(seen))
    head = f"cache counters (GET /platform/cache-stats; pids answered {sorted(seen)}"
    if missing:
        head += f", not reached {missing}"
    head += "; counted since each worker started: workers recycle after max_requests)"
    return head + "\n" + cache_table(sum_namespaces(list(seen.values())))


def sum_namespaces(payloads: list[dict]) -> dict[str, Counter]:
    """Per namespace, the integer counters of every worker added up (rates are recomputed)."""
    sums: dict[str, Counter] = defaultdict(Counter)
    for namespaces in payloads:
        for ns, counts in namespaces.items():
            for key, value in counts.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    sums[ns][key] += value
    return sums


def cache_table(sums: dict[str, Counter]) -> str:
    rows = []
    for ns in sorted(sums):
        c = sums[ns]
        looked = c["hits"] + c["misses"]
        rate = f"{100 * c['hits'] / looked:.1f}%" if looked else "-"
        cells = [c["hits"], c["local_hits"], c["misses"], c["errors"]]
        rows.append([ns, *(f"{v:,}" for v in cells), rate])
    head = ["namespace", "hits", "of which local", "misses", "errors", "hit rate"]
    return table(head, rows)


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkRow:
    name: str
    lms: api_bench.Load
    raw: api_bench.Load | None
    orm: api_bench.Load | None


def wrk_fixture(url: str, schema: str, seed: int) -> tuple[int, int, int]:
    """A (student, course, lesson) valid in the tenant and in `floor`: actively enrolled
    in an open course in both, the lesson published in both and of that course."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            pgsql.SQL(
                "SELECT e.user_id, e.course_id, l.id FROM {e} e"
                " JOIN {c} c ON c.id = e.course_id AND c.is_published AND NOT c.is_archived"
                " JOIN floor.enrollments fe ON fe.user_id = e.user_id"
                " AND fe.course_id = e.course_id"
                " JOIN floor.courses fc ON fc.id = e.course_id AND fc.is_published"
                " AND NOT fc.is_archived"
                " JOIN {l} l ON l.course_id = e.course_id AND l.is_published"
                " JOIN floor.lessons fl ON fl.id = l.id AND fl.course_id = e.course_id"
                " WHERE e.status = 'active' ORDER BY 1, 2, 3 LIMIT 50"
            ).format(
                e=pgsql.Identifier(schema, "enrollments"),
                c=pgsql.Identifier(schema, "courses"),
                l=pgsql.Identifier(schema, "lessons"),
            )
        )
        rows = cur.fetchall()
    conn.close()
    if not rows:
        raise RuntimeError("no student/course/lesson valid in both the tenant and floor")
    return rows[seed % len(rows)]


def wrk_part(
    servers: dict[str, Server], slug: str, token: str, ids: tuple[int, int, int], seconds: int
) -> tuple[list[WrkRow], list[str]]:
    u, c, lid = ids
    q = quote("calculus")
    reads = [
        ("catalog", f"{API}/courses?limit=20", f"/catalog?u={u}"),
        ("me/courses", f"{API}/me/courses", f"/me_courses?u={u}"),
        ("course detail", f"{API}/courses/{c}", f"/course/{c}"),
        ("lesson", f"{API}/lessons/{lid}", f"/lesson/{lid}?u={u}"),
        ("course progress", f"{API}/courses/{c}/progress", f"/course_progress/{c}?u={u}"),
        ("search", f"{API}/search?q={q}", f"/search?q={q}"),
    ]
    lms_headers = {TENANT_HEADER: slug, "Authorization": f"Bearer {token}"}
    lms, raw, orm = servers["lms_app"], servers.get("peer_app"), servers.get("orm_peer")
    problems = []

    def measure(name: str, server: Server, path: str, headers: dict[str, str]) -> api_bench.Load:
        status, body = http_get(server.port, path, headers)
        if status != 200:
            problems.append(f"{server.name} {path}: {status} {body[:200]!r}")
        url = server.base + path
        api_bench.load_test(name, url, headers, WRK_WARMUP_S, WRK_CONNECTIONS)  # warm-up
        return api_bench.load_test(name, url, headers, seconds, WRK_CONNECTIONS)

    rows = []
    bar = tqdm(total=len(reads) + 1, desc=f"{'wrk':24}", unit="url", leave=False)
    for name, lms_path, peer_path in reads:
        bar.set_postfix_str(name)
        row = WrkRow(
            name,
            measure(name, lms, lms_path, lms_headers),
            measure(name, raw, peer_path, {}) if raw else None,
            measure(name, orm, peer_path, {}) if orm else None,
        )
        rows.append(row)
        bar.update(1)
    bar.set_postfix_str("/healthz")
    rows.append(
        WrkRow(
            "/healthz vs /hello",
            measure("/healthz", lms, "/healthz", {}),
            measure("/hello", raw, "/hello", {}) if raw else None,
            None,
        )
    )
    bar.update(1)
    bar.close()
    return rows, problems


# --------------------------------------------------------------------------- output


def pct(values: list[float], p: float) -> float:
    return api_bench.percentile(values, p) if values else float("nan")


def table(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    out = []
    for j, r in enumerate([head, *rows]):
        pairs = enumerate(zip(r, widths, strict=True))
        cells = [v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in pairs]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def step_row(r: StepResult) -> list[str]:
    ms = r.all_ms
    share = 100 * r.cpu_s / r.wall_s if r.wall_s else 0
    return [
        r.target,
        f"{r.learners:,}",
        f"{r.requests:,}",
        f"{r.responses / r.seconds:.0f}",
        f"{pct(ms, 50):.1f}",
        f"{pct(ms, 95):.1f}",
        f"{pct(ms, 99):.1f}",
        f"{max(ms) if ms else float('nan'):.1f}",
        f"{r.errors:,}",
        f"{r.cpu_s:.1f} ({share:.0f}%, sys {r.sys_s:.1f})",
    ]


def git_facts() -> str:
    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
        )
        return proc.stdout.strip()

    dirty = (
        " (+ uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    )
    return f"{git('rev-parse', '--short=12', 'HEAD')}{dirty} {git('log', '-1', '--format=%s')[:70]}"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return "?"


_BAD_LOG_LINE = re.compile(r"Traceback|\[(ERROR|CRITICAL)\]|level=(ERROR|CRITICAL)")


def log_summary(server: Server) -> str:
    """What gunicorn and the app logged besides access lines: boots, timeouts, errors."""
    text = server.log_path.read_text(errors="replace")
    lines = text.splitlines()
    boots = sum("Booting worker" in line for line in lines)
    timeouts = sum("WORKER TIMEOUT" in line for line in lines)
    bad = [line for line in lines if _BAD_LOG_LINE.search(line)]
    warnings = [line for line in lines if "level=WARNING" in line or "[WARNING]" in line]
    statuses: Counter = Counter()
    for m in re.finditer(r'^\S+ "(\S+) (\S+)" (\d{3}) ', text, re.M):
        if not m.group(3).startswith("2"):
            path = re.sub(r"/\d+", "/<id>", m.group(2))
            statuses[f"{m.group(3)} {m.group(1)} {path}"] += 1
    out = [
        f"{server.name} log {server.log_path}: {len(lines):,} lines, {boots} worker boots, "
        f"{timeouts} worker timeouts, {len(bad)} error lines, {len(warnings)} warnings"
    ]
    out += [f"  non-2xx in the access log: {n:,} x {k}" for k, n in statuses.most_common(10)]
    out += [f"  {line[:300]}" for line in bad[:10] + warnings[:5]]
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env wants KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def delete_enrollments(url: str, schema: str, pairs: list[tuple[int, int]]) -> None:
    """Undo the run's self-enrollments (bench/data.py's --reuse wants exact counts)."""
    if not pairs:
        return
    users, courses = [p[0] for p in pairs], [p[1] for p in pairs]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            pgsql.SQL(
                "DELETE FROM {} WHERE (user_id, course_id) IN "
                "(SELECT * FROM unnest(%s::bigint[], %s::bigint[]))"
            ).format(pgsql.Identifier(schema, "enrollments")),
            (users, courses),
        )
    conn.close()


@dataclass
class Run:
    """Everything one run measured, for the report."""

    args: argparse.Namespace
    steps: list[int]
    targets: list[str]
    extra_env: dict[str, str]
    url: str
    info: bench_data.BenchData
    data_s: float
    app_env: dict[str, str]
    web: list[str]
    learners: list[Learner]
    results: list[StepResult] = field(default_factory=list)
    created: list[tuple[int, int]] = field(default_factory=list)
    login_ms: list[float] = field(default_factory=list)
    login_failures: list[str] = field(default_factory=list)
    cache_report: str = ""
    spy_report: str = ""
    wrk_ids: tuple[int, int, int] | None = None
    wrk_rows: list[WrkRow] = field(default_factory=list)
    wrk_problems: list[str] = field(default_factory=list)
    logs: str = ""


def start_servers(run: Run, stack: ExitStack) -> dict[str, Server]:
    """lms_app as the Procfile starts it, and the peers under gunicorn -w 2."""
    wanted = {TARGET_SERVER[t] for t in run.targets}
    if run.args.wrk:
        wanted |= {"lms_app", "peer_app", "orm_peer"}
    base_env = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TZ") if k in os.environ}
    base_env["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    servers: dict[str, Server] = {}
    if "lms_app" in wanted:
        env, port = {**base_env, **run.app_env}, int(run.app_env["PORT"])
        servers["lms_app"] = stack.enter_context(
            serve("lms_app", run.web, PROJECT_ROOT, env, "/healthz", port)
        )
    gunicorn_bin = str(Path(sys.executable).with_name("gunicorn"))
    for name, (spec, probe) in PEER_APPS.items():
        if name in wanted:
            port = api_bench.free_port()
            cmd = [gunicorn_bin, "-w", str(PEER_WORKERS), "-b", f"127.0.0.1:{port}", spec]
            env = {**base_env, "FLOOR_DSN": run.url}
            servers[name] = stack.enter_context(
                serve(name, cmd, bench_data.PEERS_DIR, env, probe, port)
            )
    for s in servers.values():
        print(f"{s.name}: pid {s.proc.pid}, {s.base}, log {s.log_path}", file=sys.stderr)
    return servers


def prepare_tokens(run: Run, lms: Server) -> dict[int, str]:
    """Mint every learner's token (and the wrk user's), check one, log a sample in."""
    slug = run.info.slug
    ids = [lrn.uid for lrn in run.learners]
    if run.wrk_ids is not None:
        ids.append(run.wrk_ids[0])
    tokens = mint_tokens(run.app_env, slug, run.info.schema, ids)
    for lrn in run.learners:
        lrn.token = tokens[lrn.uid]
    if not run.learners:  # --steps "": wrk only
        return tokens
    check_token(lms.port, slug, run.learners[-1], "minted")
    sample = run.learners[:LOGIN_SAMPLE]
    run.login_ms, run.login_failures = login_sample(lms.port, slug, sample)
    for lrn in sample:
        if lrn.token != tokens[lrn.uid]:
            check_token(lms.port, slug, lrn, "login")
            break
    for lrn in run.learners:
        lrn.lms_head = f"{TENANT_HEADER}: {slug}\r\nAuthorization: Bearer {lrn.token}\r\n".encode()
    return tokens


def run_ladder(run: Run, servers: dict[str, Server], platform_key: str) -> None:
    args = run.args
    open_ids = open_courses(run.url, run.info.schema)
    for target in run.targets:
        server = servers[TARGET_SERVER[target]]
        plan = Plan(target, server.port, open_ids)
        for n in run.steps:
            spy: list[tuple[subprocess.Popen, Path]] = []
            profile = target == "lms_app" and args.py_spy == n

            def on_window(spy: list = spy, profile: bool = profile) -> None:
                if profile:
                    spy.extend(start_py_spy(servers["lms_app"].worker_pids(), args.seconds))

            step = run_step(
                target,
                server.port,
                run.learners[:n],
                plan,
                args.ramp,
                args.seconds,
                run.created,
                on_window,
            )
            r = asyncio.run(step)
            run.results.append(r)
            print(
                f"{target:9} {n:>6,} learners: {r.responses / r.seconds:7.0f} req/s, "
                f"p99 {pct(r.all_ms, 99):7.1f} ms, {r.errors} errors, "
                f"generator cpu {r.cpu_s:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            if spy:
                run.spy_report = f"py-spy, lms_app at {n} learners:\n" + py_spy_report(
                    spy, args.seconds
                )
            time.sleep(2)  # let the servers drain between steps
        if target == "lms_app":
            run.cache_report = cache_counters(server, platform_key)


# --------------------------------------------------------------------------- report


def print_header(run: Run, command_line: str, started_at: str, load_before: str) -> None:
    counts, info, url = run.info.counts, run.info, run.url
    print(f"# lms_app under simulated learners  ({started_at})")
    print(f"command: {command_line}")
    print(f"git: {git_facts()}")
    print(f"machine: {api_bench.machine_facts(url)}; CPU {cpu_model()}")
    print(f"load average: {load_before} at start, {api_bench.load_now()} at end")
    print(
        f"data: database {make_url(url).database}, tenant {info.slug}: {counts['users']:,} users, "
        f"{counts['courses']:,} courses ({counts['published_courses']:,} in the catalog), "
        f"{counts['lessons']:,} lessons, {counts['enrollments']:,} enrollments, "
        f"{counts['lesson_progress']:,} progress rows; {'reused' if info.reused else 'built'} "
        f"in {run.data_s:.1f} s; the peers read schema floor of the same database"
    )
    secret = {"SECRET_KEY", "PLATFORM_API_KEY", "DATABASE_URL"}
    shown = " ".join(
        f"{k}=<{k.lower()}>" if k in secret else f"{k}={v}" for k, v in run.app_env.items()
    )
    print(f"lms_app: (cd {PROJECT_ROOT} && {shown} {shlex.join(run.web)})")
    extra = " ".join(f"{k}={v}" for k, v in run.extra_env.items())
    print(
        "  the Procfile's web: line and the config's defaults; only these variables set"
        f"{f' (--env {extra})' if extra else ''}, plus PATH and HOME; <database_url> = "
        f"{make_url(url).render_as_string(hide_password=True)}, keys random per run"
    )
    print(
        f"peers: gunicorn -w {PEER_WORKERS} -b 127.0.0.1:PORT peer_app:app | orm_peer:app "
        f"(cwd {bench_data.PEERS_DIR}, FLOOR_DSN = the same database)"
    )
    mix = ", ".join(f"{k} {v:g}%" for k, v in MIX.items())
    print(
        f"learners: asyncio streams, one coroutine each, think {THINK_S[0]:g}-{THINK_S[1]:g} s, "
        f"starts over {START_SPREAD_S:g} s, timeout {TIMEOUT_S:g} s; ramp {run.args.ramp:g} s "
        f"not counted, then {run.args.seconds:g} s; mix {mix}; the catalog follows "
        f"next_cursor with p={CATALOG_FOLLOW[0]:g}, then {CATALOG_FOLLOW[1]:g}; search terms: "
        f"{', '.join(SEARCH_TERMS)}"
    )
    print(
        "  peers: the same reads on their routes, the same student ids with their floor "
        f"enrollments; they have no writes, so the write share ({sum(MIX[w] for w in WRITES):g}%) "
        "is replaced by reads in the same proportions. hello: every request is peer_app's /hello"
    )
    if run.login_ms:
        ms = run.login_ms
        minted = len(run.learners) - len(ms) + len(run.login_failures)
        print(
            f"tokens: {len(ms)} learners logged in through POST {API}/auth/token, one after the "
            f"other: p50 {statistics.median(ms):.0f} ms, p95 {pct(ms, 95):.0f} ms, max "
            f"{max(ms):.0f} ms, {len(run.login_failures)} failed; {minted:,} minted with the "
            f"app's issue_token() (checked: 200 on {API}/me)"
        )
        for f in run.login_failures:
            print(f"  LOGIN FAILED: {f}")


def print_ladder(run: Run) -> None:
    if not run.results:
        return
    print(
        "\n## ladder (ms; req/s = answers in the counted seconds; errors = non-2xx, connection "
        "errors and timeouts; gen cpu = this process's CPU seconds in the step, % of one core, "
        "of which in the kernel)"
    )
    head = ["target", "learners", "requests", "req/s", "p50", "p95", "p99", "max", "errors"]
    print(table([*head, "gen cpu s"], [step_row(r) for r in run.results]))
    for r in run.results:
        kinds, ramp_kinds = r.error_kinds(), r.error_kinds(r.ramp_outcomes)
        if kinds or ramp_kinds:
            listed = ", ".join(f"{k} x{n:,}" for k, n in kinds.most_common()) or "none"
            ramp = ", ".join(f"{k} x{n:,}" for k, n in ramp_kinds.most_common())
            print(
                f"  errors {r.target} {r.learners:,}: {listed}"
                + (f"; ramp: {ramp}" if ramp else "")
            )
    lms = [r for r in run.results if r.target == "lms_app"]
    if not lms:
        return
    print("\n## lms_app per endpoint: answers in the counted seconds, share, p50 / p99 ms")
    rows = []
    for kind in ["catalog", "catalog_next", *[k for k in MIX if k != "catalog"]]:
        row = [kind]
        for r in lms:
            ms = r.latencies.get(kind, [])
            share = 100 * len(ms) / r.responses if r.responses else 0
            row.append(
                f"{len(ms):,} {share:4.1f}% {pct(ms, 50):6.1f} / {pct(ms, 99):6.1f}" if ms else "-"
            )
        rows.append(row)
    print(table(["endpoint", *[f"{r.learners:,} learners" for r in lms]], rows))
    bad = [
        (r, key, n)
        for r in lms
        for key, n in (r.outcomes + r.ramp_outcomes).items()
        if key[1][0] in "45"
    ]
    if bad:
        print("\nlms_app 4xx/5xx answers (counted seconds and ramp), with examples:")
        for r, (kind, status), n in bad:
            print(f"  {r.learners:,} learners: {kind} {status} x{n:,}")
            for example in r.examples.get((kind, status), []):
                print(f"      {example}")


def _wrk_cells(ld: api_bench.Load | None) -> list[str]:
    if ld is None:
        return ["-", "-", "-"]
    err = f" ({ld.errors} err)" if ld.errors else ""
    return [f"{ld.rps:.0f}{err}", f"{ld.p50:.2f}", f"{ld.p99:.2f}"]


def _ratio(a: api_bench.Load, b: api_bench.Load | None) -> float | None:
    return a.rps / b.rps if b is not None and b.rps else None


def print_wrk(run: Run) -> None:
    if not run.wrk_rows or run.wrk_ids is None:
        return
    u, c, lid = run.wrk_ids
    print(
        f"\n## wrk -t2 -c{WRK_CONNECTIONS} -d{run.args.wrk_seconds}s, each URL after an untimed "
        f"{WRK_WARMUP_S} s run (user {u}, course {c}, lesson {lid}, search 'calculus'; lms_app "
        "with X-Tenant and the user's token; ms)"
    )
    rows = []
    for w in run.wrk_rows:
        ratios = [_ratio(w.lms, w.raw), _ratio(w.lms, w.orm)]
        cells = ["-" if x is None else f"{x:.2f}" for x in ratios]
        rows.append([w.name, *_wrk_cells(w.lms), *_wrk_cells(w.raw), *_wrk_cells(w.orm), *cells])
    head = ["endpoint", "lms req/s", "p50", "p99", "raw req/s", "p50", "p99", "orm req/s"]
    print(table([*head, "p50", "p99", "lms/raw", "lms/orm"], rows))
    for p in run.wrk_problems:
        print(f"  NOT 200 before the run: {p}")


def verdicts(run: Run) -> list[list[str]]:
    out: list[list[str]] = []

    def judge(what: str, figure: str, ok: bool) -> None:
        out.append([what, figure, "PASS" if ok else "FAIL"])

    for r in run.results:
        if r.target != "lms_app":
            continue
        p99 = pct(r.all_ms, 99)
        if r.learners == 1000:
            ok = p99 <= P99_AT_1000_MS and r.errors == 0
            figure = f"p99 {p99:.1f} ms, {r.errors} errors"
            judge(f"1,000 learners: p99 <= {P99_AT_1000_MS:g} ms, 0 errors", figure, ok)
        if r.learners == 2000:
            judge("2,000 learners: 0 errors", f"{r.errors} errors (p99 {p99:.1f} ms)", not r.errors)
    for w in run.wrk_rows:
        note = f", lms_app {w.lms.errors} errors" if w.lms.errors else ""
        healthz = w.name.startswith("/healthz")
        checks = [("/hello", HEALTHZ_VS_HELLO_MIN, w.raw)] if healthz else []
        if not healthz:
            checks = [("raw peer", VS_RAW_MIN, w.raw), ("ORM peer", VS_ORM_MIN, w.orm)]
        for label, minimum, peer in checks:
            ratio = _ratio(w.lms, peer)
            if ratio is not None:
                name = "/healthz" if healthz else w.name
                ok = ratio >= minimum and not w.lms.errors
                judge(f"{name} >= {minimum:g}x {label} (wrk)", f"{ratio:.2f}x{note}", ok)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=bench_data.DEFAULT_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="flushed at the start")
    parser.add_argument("--reuse", action="store_true", help="keep a complete bench database")
    parser.add_argument("--steps", default=DEFAULT_STEPS, help="learners per step, comma-separated")
    parser.add_argument("--seconds", type=float, default=30, help="counted seconds per step")
    parser.add_argument("--ramp", type=float, default=5, help="seconds per step not counted")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"of {','.join(TARGETS)}")
    parser.add_argument("--wrk", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--wrk-seconds", type=int, default=8, help="timed seconds per URL")
    parser.add_argument("--py-spy", type=int, metavar="STEP", help="profile lms_app at this step")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown := set(targets) - set(TARGETS):
        parser.error(f"unknown targets {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    if args.py_spy is not None and (args.py_spy not in steps or "lms_app" not in targets):
        parser.error("--py-spy STEP must be one of --steps, with lms_app among --targets")
    command_line = shlex.join([".venv/bin/python", "bench/load.py", *sys.argv[1:]])
    run_started = time.perf_counter()
    load_before = api_bench.load_now()
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65_536
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    url = make_url(args.database_url).render_as_string(hide_password=False)
    data_started = time.perf_counter()
    info = bench_data.build(url, reuse=args.reuse)
    data_s = time.perf_counter() - data_started
    api_bench.settle(url, info.schema)

    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    platform_key = secrets.token_urlsafe(32)
    extra_env = parse_env(args.env)
    app_env = {
        "DATABASE_URL": url,
        "REDIS_URL": args.redis_url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "PLATFORM_API_KEY": platform_key,
        "LMS_ENV": "production",
        "PORT": str(api_bench.free_port()),
        **extra_env,
    }
    run = Run(
        args,
        steps,
        targets,
        extra_env,
        url,
        info,
        data_s,
        app_env,
        procfile_web_command(),
        pick_learners(url, info.schema, max(steps, default=0), args.seed),
    )
    try:
        with ExitStack() as stack:
            servers = start_servers(run, stack)
            run.wrk_ids = wrk_fixture(url, info.schema, args.seed) if args.wrk else None
            tokens = prepare_tokens(run, servers["lms_app"]) if "lms_app" in servers else {}
            gc.collect()
            gc.freeze()  # the learners' data stays put: no collector passes over it
            run_ladder(run, servers, platform_key)
            if run.wrk_ids is not None:
                token = tokens[run.wrk_ids[0]]
                seconds = args.wrk_seconds
                run.wrk_rows, run.wrk_problems = wrk_part(
                    servers, info.slug, token, run.wrk_ids, seconds
                )
            run.logs = "\n".join(log_summary(s) for s in servers.values())
    finally:
        delete_enrollments(url, info.schema, run.created)

    print()
    print_header(run, command_line, started_at, load_before)
    print_ladder(run)
    for report in (run.cache_report, run.spy_report):
        if report:
            print("\n" + report)
    print_wrk(run)
    print("\n" + run.logs)
    judged = verdicts(run)
    if judged:
        print("\n## targets (issue 9; only those measured in this run)")
        print(table(["target", "measured", "result"], judged, left=2))
    else:
        print("\n## targets: none measured in this run (no 1,000 or 2,000 step, no wrk)")
    if run.created:
        print(f"\n{len(run.created)} self-enrollments made by the run were deleted afterwards")
    print(f"total run {time.perf_counter() - run_started:.0f} s")
    return 1 if any(v[2] == "FAIL" for v in judged) else 0


if __name__ == "__main__":
    sys.exit(main())
