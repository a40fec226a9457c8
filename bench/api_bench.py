"""API benchmark: lms_app's hot endpoints at the issue's data size, next to the peers.

Not a test. Builds (or reuses) the benchmark database with bench/data.py, then:

1. Latency through the WSGI app (Flask test client, one request at a time, wall time
   per request; p50/p95/p99 and requests/s) for the catalog (first page and a deep
   keyset page), course progress, lesson with progress, search, a progress batch of
   50 and a bulk enrollment of 10,000 users, with SQL statements per request and
   the SQL share of the time (before/after_cursor_execute listeners).
2. Bulk enrollment against the seed's one-by-one loop (1,000 autocommitted INSERTs,
   extrapolated to 10,000) and a raw COPY of the same 10,000 rows.
3. The peers in the same run: ../shared/peers/floor_bench.py (raw psycopg2 on
   the floor schema of the same database) and, with --gunicorn, requests/s under
   `gunicorn -w 2` + `wrk -t2 -c32 -d8s` for the peer app (/hello, /catalog) and
   lms_app (/api/v1/courses, /healthz).
4. One table with targets and PASS/MISS; EXPLAIN (ANALYZE, BUFFERS) of the
   statements of every endpoint that misses, and a cProfile summary when most of
   a miss is spent outside SQL.

    .venv/bin/python bench/api_bench.py [--database-url URL] [--reuse] [--requests N]
                                        [--gunicorn]

Random choices use fixed seeds; data is identical on every build. With --reuse the
data of earlier runs is kept, including progress written by earlier batches.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import psycopg2  # noqa: E402
from psycopg2 import sql as pgsql  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench import data as bench_data  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own
SECRET_KEY = "api-bench-secret-key-not-for-production-0123456789"
PLATFORM_KEY = "api-bench-platform-key-0123456789"
SEED = 4242
TENANT_HEADER = "X-Tenant"
API = "/api/v1"
PEERS_DIR = bench_data.PEERS_DIR
FLOOR_USER = 500  # peer_app's default user

# Equally likely search queries: from rare to ~44 % of lessons, phrase, OR, negation,
# course-only and no-hit queries (frequencies printed with the results).
SEARCH_QUERIES = (
    "photosynthesis",
    "calculus",
    "renaissance",
    "assessment",
    "feature",
    "effect",
    "evidence",
    "quantum mechanics",
    "supply demand",
    '"supply and demand"',
    "sonnets or haiku",
    "neural networks -biology",
    "energy force",
    "palimpsest",
    "introduction",
    "zeppelin",
)

CATALOG_P95_MS = 3.0
SEARCH_P95_MS = 10.0
BULK_VS_COPY_MAX = 1.5
BULK_VS_ONE_BY_ONE_MIN = 20.0
THROUGHPUT_VS_PEER_MIN = 0.6
LMS_CATALOG = "lms_app /api/v1/courses"
CACHED, UNCACHED = "(page cache)", "(uncached)"


def make_settings(database_url: str, redis_url: str, **overrides: Any):
    """The app's settings for the benchmark (shared with bench/bench_wsgi.py)."""
    from config.settings import Settings, normalize_database_url

    return Settings(
        env="test",
        database_url=normalize_database_url(database_url),
        redis_url=redis_url,
        secret_key=SECRET_KEY,
        platform_api_key=PLATFORM_KEY,
        login_limit_per_account="100000/minute",
        login_limit_per_address="100000/minute",
        **overrides,
    )


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


@dataclass
class Sample:
    """One timed request: wall ms, SQL ms, statements and what was executed."""

    ms: float
    sql_ms: float
    statements: list[tuple[str, Any]]
    label: str = ""


@dataclass
class Result:
    name: str
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0
    target: str = "-"
    verdict: str = "info"
    note: str = ""
    explain: bool = False  # EXPLAIN its statements when it misses

    @property
    def times(self) -> list[float]:
        return [s.ms for s in self.samples]

    def p(self, q: float) -> float:
        return percentile(self.times, q)

    @property
    def rps(self) -> float:
        return len(self.samples) / self.wall_s if self.wall_s else 0.0

    @property
    def statements(self) -> float:
        return statistics.median(len(s.statements) for s in self.samples)

    @property
    def sql_p50(self) -> float:
        return statistics.median(s.sql_ms for s in self.samples)


@dataclass
class Row:
    name: str
    p50: str
    p95: str
    p99: str
    rps: str
    stmts: str
    sql: str
    target: str
    verdict: str


# --------------------------------------------------------------------------- SQL capture


class SqlRecorder:
    """Statements and their time, per request, from the app engine's cursor events."""

    def __init__(self) -> None:
        self.active = False
        self.statements: list[tuple[str, Any]] = []
        self.sql_s = 0.0
        self._local = threading.local()

    def attach(self, engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _before(conn, cursor, statement, parameters, context, executemany):
            self._local.started = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def _after(conn, cursor, statement, parameters, context, executemany):
            if self.active:
                self.sql_s += time.perf_counter() - self._local.started
                self.statements.append((statement, None if executemany else parameters))

    @contextmanager
    def capture(self) -> Iterator[None]:
        self.statements, self.sql_s, self.active = [], 0.0, True
        try:
            yield
        finally:
            self.active = False


# --------------------------------------------------------------------------- the app


class Client:
    """The Flask test client with the tenant header, tokens and per-request timing."""

    def __init__(self, app, recorder: SqlRecorder, slug: str) -> None:
        self.app = app
        self.client = app.test_client()
        self.recorder = recorder
        self.slug = slug
        self.failures: list[str] = []

    def headers(self, token: str | None) -> dict[str, str]:
        headers = {TENANT_HEADER: self.slug}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def call(self, method: str, path: str, token: str | None, body: Any = None):
        return self.client.open(path, method=method, headers=self.headers(token), json=body)

    def timed(self, method: str, path: str, token: str, body: Any = None, label: str = ""):
        with self.recorder.capture():
            started = time.perf_counter()
            response = self.call(method, path, token, body)
            elapsed = (time.perf_counter() - started) * 1000
        if response.status_code >= 300 and len(self.failures) < 20:
            self.failures.append(
                f"{method} {path} -> {response.status_code} {response.data[:300]!r}"
            )
        sample = Sample(elapsed, self.recorder.sql_s * 1000, self.recorder.statements, label)
        return response, sample

    def login(self, email: str, password: str) -> str:
        response = self.call(
            "POST", f"{API}/auth/token", None, {"email": email, "password": password}
        )
        if response.status_code != 200:
            raise RuntimeError(f"login {email}: {response.status_code} {response.data[:300]!r}")
        return response.get_json()["access_token"]


@dataclass
class Student:
    id: int
    token: str
    courses: list[int]  # active enrollments in published, non-archived courses
    lessons: list[int]  # their published lessons


def load_students(url: str, schema: str, student_ids: list[int]) -> dict[int, tuple[list, list]]:
    """Per student: learnable courses and lessons of active enrollments (one query)."""
    t = {name: pgsql.Identifier(schema, name) for name in ("enrollments", "courses", "lessons")}
    stmt = pgsql.SQL(
        "SELECT e.user_id, e.course_id, array_agg(l.id ORDER BY l.id) FILTER (WHERE l.is_published)"
        " FROM {enrollments} e JOIN {courses} c ON c.id = e.course_id"
        " JOIN {lessons} l ON l.course_id = c.id"
        " WHERE e.user_id = ANY(%s) AND e.status = 'active' AND c.is_published"
        " AND NOT c.is_archived GROUP BY 1, 2 ORDER BY 1, 2"
    ).format(**t)
    out: dict[int, tuple[list, list]] = {uid: ([], []) for uid in student_ids}
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(stmt, (student_ids,))
        for user_id, course_id, lessons in cur.fetchall():
            out[user_id][0].append(course_id)
            out[user_id][1].extend(lessons or [])
    conn.close()
    return out


# --------------------------------------------------------------------------- timing


def run_endpoint(
    name: str,
    client: Client,
    make_request: Callable[[], tuple[str, str, str, Any, str]],
    n: int,
    warmup: int,
) -> Result:
    """Warm up, then time `n` requests one after the other."""
    for _ in range(warmup):
        method, path, token, body, label = make_request()
        client.call(method, path, token, body)
    result = Result(name)
    started = time.perf_counter()
    for _ in tqdm(range(n), desc=f"{name[:30]:30}", unit="req", leave=False):
        method, path, token, body, label = make_request()
        _, sample = client.timed(method, path, token, body, label)
        result.samples.append(sample)
    result.wall_s = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------- bulk enroll


class EnrollTable:
    """Direct psycopg2 access to the tenant's enrollments table (qualified, no search_path)."""

    def __init__(self, url: str, schema: str, course_id: int) -> None:
        self.conn = psycopg2.connect(url)
        self.conn.autocommit = True
        self.table = pgsql.Identifier(schema, "enrollments")
        self.course_id = course_id

    def reset(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(
                pgsql.SQL("DELETE FROM {} WHERE course_id = %s").format(self.table),
                (self.course_id,),
            )
            cur.execute(pgsql.SQL("VACUUM {}").format(self.table))

    def count(self) -> int:
        with self.conn.cursor() as cur:
            cur.execute(
                pgsql.SQL("SELECT count(*) FROM {} WHERE course_id = %s").format(self.table),
                (self.course_id,),
            )
            return cur.fetchone()[0]

    def copy(self, user_ids: list[int]) -> float:
        buf = io.StringIO("".join(f"{self.course_id}\t{u}\n" for u in user_ids))
        stmt = pgsql.SQL("COPY {} (course_id, user_id) FROM STDIN").format(self.table)
        started = time.perf_counter()
        with self.conn.cursor() as cur:
            cur.copy_expert(stmt.as_string(self.conn), buf)
        return time.perf_counter() - started

    def one_by_one(self, user_ids: list[int]) -> float:
        stmt = pgsql.SQL(
            "INSERT INTO {} (course_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
        ).format(self.table)
        started = time.perf_counter()
        with self.conn.cursor() as cur:
            for u in user_ids:
                cur.execute(stmt, (self.course_id, u))
        return time.perf_counter() - started

    def close(self) -> None:
        self.conn.close()


@dataclass
class BulkFigures:
    api: Result
    copy: Result
    one_by_one_10k_s: float
    one_by_one_1k_s: list[float]


def bench_bulk(client: Client, url: str, info, admin_token: str, rounds: int) -> BulkFigures:
    user_ids = list(range(info.first_student_id, info.first_student_id + info.n_students))
    course_id = info.bulk_course_id
    table = EnrollTable(url, info.schema, course_id)
    path = f"{API}/courses/{course_id}/enrollments"
    body = {"user_ids": user_ids}
    api, copy = Result("bulk enroll 10k (API)"), Result("raw COPY 10k (psycopg2)")
    try:
        table.reset()
        for i in tqdm(range(rounds + 1), desc=f"{'bulk enroll rounds':30}", leave=False):
            # API and COPY alternate, so drift on the machine hits both alike.
            response, sample = client.timed("POST", path, admin_token, body)
            payload = response.get_json(silent=True) or {}
            if response.status_code != 200 or payload.get("enrolled") != len(user_ids):
                raise RuntimeError(f"bulk enroll: {response.status_code} {payload}")
            if table.count() != len(user_ids):
                raise RuntimeError("bulk enroll: rows missing after the call")
            table.reset()
            copy_s = table.copy(user_ids)
            table.reset()
            if i:  # round 0 warms up
                api.samples.append(sample)
                copy.samples.append(Sample(copy_s * 1000, copy_s * 1000, []))
        api.wall_s = sum(api.times) / 1000
        copy.wall_s = sum(copy.times) / 1000
        one = []
        for _ in range(3):
            one.append(table.one_by_one(user_ids[:1000]))
            table.reset()
    finally:
        table.reset()
        table.close()
    return BulkFigures(api, copy, statistics.median(one) * 10, one)


# --------------------------------------------------------------------------- peers


def run_floor_bench(url: str) -> tuple[str, dict[str, tuple[float, float]]]:
    """floor_bench.py as a subprocess on the same database; its output and parsed figures."""
    proc = subprocess.run(
        [sys.executable, str(PEERS_DIR / "floor_bench.py"), url],
        cwd=PEERS_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return f"floor_bench.py failed ({proc.returncode}):\n{proc.stderr[-2000:]}", {}
    figures: dict[str, tuple[float, float]] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(.*?)\s+(\d+\.\d+)\s+(\d+\.\d+)\s*$", line)
        if m:
            figures[m.group(1).strip()] = (float(m.group(2)), float(m.group(3)))
    return proc.stdout.rstrip(), figures


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn(app_spec: str, cwd: Path, env: dict[str, str], extra: list[str], probe: str):
    port = free_port()
    binary = Path(sys.executable).with_name("gunicorn")
    log_path = Path(f"/tmp/api_bench_gunicorn_{port}.log")
    log = log_path.open("w")
    proc = subprocess.Popen(
        [str(binary), "-w", "2", "-b", f"127.0.0.1:{port}", *extra, app_spec],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + probe, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn {app_spec} did not start; see {log_path}")
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass
class Load:
    name: str
    rps: float
    p50: float
    p99: float
    errors: int
    output: str


def _wrk_ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def load_test(name: str, url: str, headers: dict[str, str], seconds: int, conns: int) -> Load:
    """wrk -t2 (bounded: -c conns, -d seconds, loopback), else a threaded Python client."""
    if shutil.which("wrk"):
        args = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency"]
        for k, v in headers.items():
            args += ["-H", f"{k}: {v}"]
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = re.search(r"\s50%\s+(\S+)", out)
        p99 = re.search(r"\s99%\s+(\S+)", out)
        bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        errs = re.search(r"Socket errors:.*", out)
        errors = int(bad.group(1)) if bad else 0
        if errs:
            errors += sum(int(x) for x in re.findall(r"\d+", errs.group(0)))
        return Load(
            name,
            rps,
            _wrk_ms(p50.group(1)) if p50 else float("nan"),
            _wrk_ms(p99.group(1)) if p99 else float("nan"),
            errors,
            out,
        )
    return _python_load(name, url, headers, seconds, conns)


def _python_load(name: str, url: str, headers: dict[str, str], seconds: int, conns: int) -> Load:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    stop = time.monotonic() + seconds
    times: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        mine = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append((time.perf_counter() - started) * 1000)
            if response.status >= 300:
                errors[0] += 1
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(conns)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return Load(
        name, len(times) / wall, percentile(times, 50), percentile(times, 99), errors[0], ""
    )


def bench_gunicorn(
    url: str, redis_url: str, slug: str, token: str, seconds: int, conns: int
) -> list[Load]:
    loads = []
    env_peer = {"FLOOR_DSN": url}
    with gunicorn("peer_app:app", PEERS_DIR, env_peer, [], "/hello") as base:
        for path in ("/hello", f"/catalog?u={FLOOR_USER}"):
            loads.append(load_test(f"peer {path.split('?')[0]}", base + path, {}, seconds, conns))
    extra = ["--pythonpath", str(PROJECT_ROOT / "bench")]
    headers = {TENANT_HEADER: slug, "Authorization": f"Bearer {token}"}
    for variant, flag in ((CACHED, "1"), (UNCACHED, "0")):
        env_app = {"BENCH_DATABASE_URL": url, "REDIS_URL": redis_url, "BENCH_PAGE_CACHE": flag}
        with gunicorn("bench_wsgi:app", PROJECT_ROOT, env_app, extra, "/healthz") as base:
            path = f"{API}/courses?limit=20"
            loads.append(
                load_test(f"{LMS_CATALOG} {variant}", base + path, headers, seconds, conns)
            )
            if variant == CACHED:
                loads.append(load_test("lms_app /healthz", base + "/healthz", {}, seconds, conns))
    return loads


# --------------------------------------------------------------------------- diagnosis


def explain(url: str, statements: list[tuple[str, Any]]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of captured statements, each in a rolled-back transaction.

    Every statement is run once before (also rolled back) so the plan shown is that of
    a warm connection, as in the app's pool: a new backend's first planning includes
    loading the catalog caches.
    """
    out = []
    with psycopg2.connect(url) as conn:
        for statement, params in statements:
            if params is None:
                continue
            plan = ""
            for _ in range(2):
                with conn.cursor() as cur:
                    try:
                        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                        plan = "\n".join(r[0] for r in cur.fetchall())
                    except psycopg2.Error as exc:
                        plan = f"(could not explain: {exc})"
                conn.rollback()
            shown = " ".join(statement.split())
            out.append(f"-- {shown[:600]}{' ...' if len(shown) > 600 else ''}\n{plan}")
    conn.close()
    return "\n\n".join(out)


def profile(client: Client, make_request, n: int = 200) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        method, path, token, body, _ = make_request()
        client.call(method, path, token, body)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    return "\n".join(line.replace(str(Path(sys.prefix)), "<venv>") for line in lines)


# --------------------------------------------------------------------------- output


def fmt(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}"


def render_table(rows: list[Row]) -> str:
    head = Row(
        "endpoint", "p50 ms", "p95 ms", "p99 ms", "req/s", "stmts", "sql p50", "target", "result"
    )
    cells = [head, *rows]
    widths = [max(len(getattr(r, f)) for r in cells) for f in Row.__dataclass_fields__]
    lines = []
    for i, r in enumerate(cells):
        values = [getattr(r, f) for f in Row.__dataclass_fields__]
        line = " | ".join(
            v.ljust(w) if j in (0, 7, 8) else v.rjust(w)
            for j, (v, w) in enumerate(zip(values, widths, strict=True))
        )
        lines.append(line.rstrip())
        if i == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def result_row(r: Result) -> Row:
    return Row(
        r.name,
        fmt(r.p(50)),
        fmt(r.p(95)),
        fmt(r.p(99)),
        fmt(r.rps, 0),
        f"{r.statements:g}" if r.samples and r.samples[0].statements else "-",
        fmt(r.sql_p50) if r.samples and r.samples[0].statements else "-",
        r.target,
        r.verdict,
    )


def settle(url: str, schema: str) -> None:
    """Start every run from the same state: earlier runs' progress writes and bulk
    rounds leave dead rows and dirty pages that autovacuum and the checkpointer
    would otherwise clean up in the middle of the timed requests."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for table in ("lesson_progress", "enrollments"):
                cur.execute(
                    pgsql.SQL("VACUUM (ANALYZE) {}").format(pgsql.Identifier(schema, table))
                )
            cur.execute("CHECKPOINT")
    finally:
        conn.close()


def ratio_row(label: str, target: str, verdict: str) -> Row:
    """A ratio line under the figures it compares."""
    return Row(f"  {label}", "", "", "", "", "", "", target, verdict)


def judge_latency(r: Result, p95_max: float | None, max_statements: int | None) -> None:
    parts, ok = [], True
    if p95_max is not None:
        parts.append(f"p95<={p95_max:g}ms")
        ok &= r.p(95) <= p95_max
    if max_statements is not None:
        parts.append(f"<={max_statements} stmt")
        ok &= max(len(s.statements) for s in r.samples) <= max_statements
    if parts:
        r.target = ", ".join(parts)
        r.verdict = "PASS" if ok else "MISS"
        r.explain = not ok


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=bench_data.DEFAULT_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--reuse", action="store_true", help="keep a complete bench database")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per endpoint")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests per endpoint")
    parser.add_argument("--students", type=int, default=40, help="students logged in and used")
    parser.add_argument("--bulk-rounds", type=int, default=9)
    parser.add_argument("--gunicorn", action="store_true", help="throughput under gunicorn + wrk")
    parser.add_argument("--duration", type=int, default=8, help="seconds per load test")
    parser.add_argument("--connections", type=int, default=32, help="load-test connections")
    args = parser.parse_args(argv)
    url = make_url(args.database_url).render_as_string(hide_password=False)
    run_started = time.perf_counter()
    load_before = load_now()
    rnd = random.Random(SEED)

    # 1. data --------------------------------------------------------------------------
    started = time.perf_counter()
    info = bench_data.build(url, reuse=args.reuse)
    data_s = time.perf_counter() - started
    settle(url, info.schema)

    # 2. the app, tokens, fixtures -----------------------------------------------------
    from lms_app import create_app
    from lms_app.extensions import db

    recorder = SqlRecorder()

    def bench_client(**overrides: Any) -> Client:
        app = create_app(make_settings(url, args.redis_url, **overrides))
        with app.app_context():
            for engine in db.engines.values():
                recorder.attach(engine)
        return Client(app, recorder, info.slug)

    client = bench_client()
    # The same deployment with the catalog page cache off: the uncached figures.
    uncached = bench_client(cache_catalog_pages=False)

    ids = rnd.sample(range(info.first_student_id, info.first_student_id + info.n_students), 400)
    fixtures = load_students(url, info.schema, ids)
    chosen = [u for u in ids if len(fixtures[u][1]) >= 50][: args.students]
    students: list[Student] = []
    admin_token = client.login(info.admin_email, info.password)
    for uid in tqdm(chosen, desc=f"{'log in students':30}", unit="user", leave=False):
        token = client.login(bench_data.student_email(uid), info.password)
        # Steady state: a signed-in user's auth state is in the shared cache (the very
        # first request of a user costs one extra statement to put it there).
        client.call("GET", f"{API}/me", token)
        students.append(Student(uid, token, *fixtures[uid]))

    # Deep keyset cursor: walk the catalog with the largest page (not timed).
    cursor, depth = None, 0
    while depth < 8000:
        q = f"{API}/courses?limit=100" + (f"&cursor={cursor}" if cursor else "")
        page = client.call("GET", q, admin_token).get_json()
        depth += len(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    def catalog_first():
        s = rnd.choice(students)
        return "GET", f"{API}/courses?limit=20", s.token, None, ""

    def catalog_deep():
        s = rnd.choice(students)
        return "GET", f"{API}/courses?limit=20&cursor={cursor}", s.token, None, ""

    def course_progress():
        s = rnd.choice(students)
        return "GET", f"{API}/courses/{rnd.choice(s.courses)}/progress", s.token, None, ""

    def lesson():
        s = rnd.choice(students)
        return "GET", f"{API}/lessons/{rnd.choice(s.lessons)}", s.token, None, ""

    def search():
        s, q = rnd.choice(students), rnd.choice(SEARCH_QUERIES)
        from urllib.parse import quote

        return "GET", f"{API}/search?q={quote(q)}&limit=20", s.token, None, q

    def batch():
        s = rnd.choice(students)
        updates = [
            {
                "lesson_id": lid,
                "progress_percentage": rnd.choice((30, 60, 100)),
                "time_spent": rnd.randint(5, 120),
            }
            for lid in rnd.sample(s.lessons, 50)
        ]
        return "POST", f"{API}/progress/batch", s.token, {"updates": updates}, ""

    def healthz():
        return "GET", "/healthz", "", None, ""

    search_name = "search (16 queries, limit 20)"
    endpoints: list[tuple[str, Callable, float | None, int | None, Client]] = [
        (f"catalog page 1 (limit 20) {UNCACHED}", catalog_first, CATALOG_P95_MS, 1, uncached),
        (
            f"catalog deep page (after {depth}) {UNCACHED}",
            catalog_deep,
            CATALOG_P95_MS,
            1,
            uncached,
        ),
        (f"catalog page 1 (limit 20) {CACHED}", catalog_first, CATALOG_P95_MS, 1, client),
        (f"catalog deep page {CACHED}", catalog_deep, CATALOG_P95_MS, 1, client),
        ("course progress", course_progress, None, 1, client),
        ("lesson with progress", lesson, None, 1, client),
        (search_name, search, SEARCH_P95_MS, None, client),
        ("progress batch of 50", batch, None, None, client),
        ("/healthz (framework floor, no auth)", healthz, None, None, client),
    ]
    makers = {name: (make, on) for name, make, _, _, on in endpoints}
    results: list[Result] = []
    for name, make, p95_max, max_stmts, on in endpoints:
        r = run_endpoint(name, on, make, args.requests, args.warmup)
        judge_latency(r, p95_max, max_stmts)
        results.append(r)

    # 3. bulk enroll -------------------------------------------------------------------
    bulk = bench_bulk(client, url, info, admin_token, args.bulk_rounds)
    api_s = statistics.median(bulk.api.times) / 1000
    copy_s = statistics.median(bulk.copy.times) / 1000
    # Rounds alternate API and COPY, so each pair met the same machine: the ratio is
    # the median of the per-round ratios.
    vs_copy = statistics.median(a / c for a, c in zip(bulk.api.times, bulk.copy.times, strict=True))
    vs_one = bulk.one_by_one_10k_s / api_s
    bulk_ok = vs_copy <= BULK_VS_COPY_MAX and vs_one >= BULK_VS_ONE_BY_ONE_MIN
    bulk.api.target = f"<={BULK_VS_COPY_MAX:g}x COPY, >={BULK_VS_ONE_BY_ONE_MIN:g}x 1-by-1"
    bulk.api.verdict = "PASS" if bulk_ok else "MISS"
    bulk.api.explain = not bulk_ok
    bulk.copy.target = "reference"
    bulk.copy.verdict = "-"

    # 4. peers -------------------------------------------------------------------------
    print("running peers/floor_bench.py ...", file=sys.stderr, flush=True)
    floor_out, floor = run_floor_bench(url)
    loads: list[Load] = []
    if args.gunicorn:
        print("gunicorn + load tests ...", file=sys.stderr, flush=True)
        loads = bench_gunicorn(
            url, args.redis_url, info.slug, students[0].token, args.duration, args.connections
        )

    # 5. report ------------------------------------------------------------------------
    rows = [result_row(r) for r in results]
    rows.append(result_row(bulk.api))
    rows.append(result_row(bulk.copy))
    rows.append(
        Row(
            "seed one-by-one 10k (from 1k)",
            fmt(bulk.one_by_one_10k_s * 1000, 0),
            "-",
            "-",
            "-",
            "-",
            "-",
            "reference",
            "-",
        )
    )
    rows.append(
        ratio_row(
            f"ratio API / COPY = {vs_copy:.2f}",
            f"<={BULK_VS_COPY_MAX:g}",
            "PASS" if vs_copy <= BULK_VS_COPY_MAX else "MISS",
        )
    )
    rows.append(
        ratio_row(
            f"ratio one-by-one / API = {vs_one:.1f}",
            f">={BULK_VS_ONE_BY_ONE_MIN:g}",
            "PASS" if vs_one >= BULK_VS_ONE_BY_ONE_MIN else "MISS",
        )
    )
    for name, (p50, p95) in floor.items():
        rows.append(
            Row(f"floor: {name}", fmt(p50, 3), fmt(p95, 3), "-", "-", "-", "-", "peer", "-")
        )
    throughput_miss = False
    if loads:
        by = {ld.name: ld for ld in loads}
        for ld in loads:
            note = f" ({ld.errors} errors)" if ld.errors else ""
            rows.append(
                Row(
                    f"gunicorn {ld.name}{note}",
                    fmt(ld.p50),
                    "-",
                    fmt(ld.p99),
                    fmt(ld.rps, 0),
                    "-",
                    "-",
                    "peer" if "peer" in ld.name else "-",
                    "-",
                )
            )
        # Judged as shipped (page cache on, the default); uncached shown beside it.
        ratio = by[f"{LMS_CATALOG} {CACHED}"].rps / by["peer /catalog"].rps
        throughput_miss = ratio < THROUGHPUT_VS_PEER_MIN
        rows.append(
            ratio_row(
                f"ratio lms_app catalog {CACHED} / peer /catalog = {ratio:.2f}",
                f">={THROUGHPUT_VS_PEER_MIN:g}",
                "MISS" if throughput_miss else "PASS",
            )
        )
        bare = by[f"{LMS_CATALOG} {UNCACHED}"].rps / by["peer /catalog"].rps
        rows.append(
            ratio_row(f"ratio lms_app catalog {UNCACHED} / peer /catalog = {bare:.2f}", "info", "-")
        )
        ceiling = by[f"{LMS_CATALOG} {CACHED}"].rps / by["peer /hello"].rps
        rows.append(
            ratio_row(f"ratio lms_app catalog / peer /hello = {ceiling:.2f}", "ceiling", "-")
        )

    counts = info.counts
    print()
    print(f"# lms_app API benchmark  (database {make_url(url).database}, tenant {info.slug})")
    print(
        f"machine: {machine_facts(url)}; load average {load_before} at start, {load_now()} at end"
    )
    print(
        f"data: {counts['users']:,} users, {counts['courses']:,} courses "
        f"({counts['published_courses']:,} in the catalog), {counts['lessons']:,} lessons, "
        f"{counts['enrollments']:,} enrollments, {counts['lesson_progress']:,} progress rows; "
        f"{'reused' if info.reused else 'built'} in {data_s:.1f} s"
    )
    print(
        f"in-process: Flask test client, {args.requests} timed requests per endpoint after "
        f"{args.warmup} warm-up, {len(students)} students (random per request); bulk: "
        f"{args.bulk_rounds} rounds after 1 warm-up; ms unless noted; sql p50 = time inside "
        "cursor.execute per request"
    )
    if loads:
        print(f"load: gunicorn -w 2 (sync), wrk -t2 -c{args.connections} -d{args.duration}s")
    print()
    print(render_table(rows))

    # per-query search figures
    search_result = next(r for r in results if r.name == search_name)
    print("\nsearch by query: lesson / course matches, p50 and max ms")
    hits = match_counts(url, info.schema)
    by_q: dict[str, list[float]] = {}
    for s in search_result.samples:
        by_q.setdefault(s.label, []).append(s.ms)
    for q in SEARCH_QUERIES:
        ts = by_q.get(q, [])
        lessons, courses = hits[q]
        if ts:
            print(
                f"  {q:28} {lessons:>7,} {courses:>6,}  p50 {statistics.median(ts):7.2f}"
                f"  max {max(ts):7.2f}  (n={len(ts)})"
            )

    print("\npeers/floor_bench.py (raw psycopg2, floor schema, same database):")
    print(floor_out)
    print(
        f"\nbulk enroll 10k: API p50 {api_s * 1000:.0f} ms (rounds "
        f"{', '.join(f'{t:.0f}' for t in bulk.api.times)}), COPY p50 {copy_s * 1000:.0f} ms, "
        f"one-by-one 1k: {', '.join(f'{t * 1000:.0f}' for t in bulk.one_by_one_1k_s)} ms"
    )
    if client.failures:
        print("\nNON-2xx RESPONSES (first ones):")
        for f in client.failures:
            print("  " + f)

    # 6. diagnosis of misses ------------------------------------------------------------
    misses = [r for r in [*results, bulk.api] if r.explain]
    cached_first = results[2]  # the catalog as served under load
    if throughput_miss and not any(r is cached_first for r in misses):
        misses.insert(0, cached_first)
    for r in misses:
        slowest = max(r.samples, key=lambda s: s.ms)
        label = f", {slowest.label!r}" if slowest.label else ""
        print(
            f"\n## MISS {r.name}: statements of its slowest request "
            f"({slowest.ms:.2f} ms, sql {slowest.sql_ms:.2f} ms{label})"
        )
        print(explain(url, slowest.statements))
        share = r.sql_p50 / r.p(50) if r.p(50) else 0
        if r.name in makers and share < 0.5:
            print(f"\n## {r.name}: SQL is {share:.0%} of p50; cProfile of 200 requests (tottime)")
            make, on = makers[r.name]
            print(profile(on, make))
    print(f"\ntotal run {time.perf_counter() - run_started:.0f} s")
    return 0


def load_now() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_facts(url: str) -> str:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT current_setting('server_version'), current_setting('shared_buffers'), "
            "current_setting('synchronous_commit')"
        )
        version, shared_buffers, sync = cur.fetchone()
    conn.close()
    return (
        f"{os.cpu_count()} cpus, PostgreSQL {version.split()[0]} (shared_buffers "
        f"{shared_buffers}, synchronous_commit {sync}), Python {sys.version.split()[0]}"
    )


def match_counts(url: str, schema: str) -> dict[str, tuple[int, int]]:
    out = {}
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for q in SEARCH_QUERIES:
            counts = []
            for table in ("lessons", "courses"):
                cur.execute(
                    pgsql.SQL(
                        "SELECT count(*) FROM {} WHERE search_vector @@ "
                        "websearch_to_tsquery('english', %s)"
                    ).format(pgsql.Identifier(schema, table)),
                    (q,),
                )
                counts.append(cur.fetchone()[0])
            out[q] = (counts[0], counts[1])
    conn.close()
    return out


if __name__ == "__main__":
    sys.exit(main())
