"""Benchmark: `tenants create` and `db-upgrade` over many tenants.

Not a test. It creates its own throw-away database, measures, prints a table and
drops the database again (unless --keep):

    .venv/bin/python bench/tenancy_bench.py --tenants 200 --jobs 2 --noop-tenants 1000

1. `tenants create`: `create_tenant()` in process, --create-runs times (p50/p95/max),
   plus once through the real CLI as a subprocess; process start-up (interpreter,
   imports, app factory) is measured on its own with `flask --app wsgi tenants --help`.
2. Bulk-create tenants up to --tenants (not timed as a result, rate shown).
3. Pending migrations: every tenant is downgraded to --from-revision (default 0001,
   so every secondary index is pending; not timed), then
   `flask --app wsgi db-upgrade --jobs N` runs as a subprocess.
4. No-op: the same command again with nothing pending.
5. No-op at --noop-tenants: tenants created up to that number, then the no-op again.

After every upgrade the database is checked: every tenant at head, every index of
the head revision present and valid in every tenant.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402
from tqdm import tqdm  # noqa: E402

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/lms_bench_tenancy"
ADMIN_PASSWORD = "bench-password-123"
SLUG_PREFIX = "bench"


# --------------------------------------------------------------------------- helpers


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil without float surprises
    return ordered[int(rank) - 1]


def slug_for(i: int) -> str:
    return f"{SLUG_PREFIX}_{i:05d}"


def flask_bin() -> str:
    candidate = Path(sys.executable).with_name("flask")
    return str(candidate) if candidate.exists() else "flask"


@dataclass
class Row:
    step: str
    tenants: str
    result: str
    note: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, step: str, tenants: object, result: str, note: str = "") -> None:
        self.rows.append(Row(step, str(tenants), result, note))


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    started = time.perf_counter()
    ended: list[float] = []
    yield lambda: (ended[0] if ended else time.perf_counter()) - started
    ended.append(time.perf_counter())


# --------------------------------------------------------------------------- database


def recreate_database(url: str) -> None:
    target = make_url(url)
    name = target.database
    admin = create_plain_engine(target.set(database="postgres").render_as_string(False))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()


def drop_database(url: str) -> None:
    target = make_url(url)
    admin = create_plain_engine(target.set(database="postgres").render_as_string(False))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    admin.dispose()


def create_plain_engine(url: str) -> Engine:
    from config.settings import normalize_database_url

    return sa.create_engine(normalize_database_url(url), poolclass=NullPool)


def server_facts(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version").scalar_one()
        settings = dict(
            conn.exec_driver_sql(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
                "('max_connections', 'shared_buffers', 'fsync', 'synchronous_commit')"
            ).all()
        )
    return {"version": version, **settings}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tenant_count(engine: Engine) -> int:
    from lms_app.tenancy.provisioning import count_tenants

    return count_tenants(engine)


def verify_all_at_head(engine: Engine, expected_tenants: int) -> list[str]:
    """Problems found: tenants not at head, missing or invalid indexes."""
    from lms_app.tenancy.migrations import tenant_head
    from lms_app.tenancy.upgrade import pending_tenants

    problems: list[str] = []
    pending, total = pending_tenants(engine)
    if total != expected_tenants:
        problems.append(f"expected {expected_tenants} tenants, registry has {total}")
    if pending:
        problems.append(
            f"{len(pending)} tenant(s) not at head {tenant_head()}: "
            + ", ".join(s for s, _ in pending[:5])
        )
    with engine.connect() as conn:
        per_schema = conn.execute(
            sa.text(
                "SELECT n.nspname, count(*) FILTER (WHERE c.relname LIKE 'ix\\_%'), "
                "count(*) FILTER (WHERE NOT i.indisvalid OR NOT i.indisready) "
                "FROM pg_catalog.pg_index i "
                "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname LIKE 't\\_%' GROUP BY n.nspname"
            )
        ).all()
    counts = {row[1] for row in per_schema}
    invalid = sum(row[2] for row in per_schema)
    if len(per_schema) != total:
        problems.append(f"{total} tenants but {len(per_schema)} schemas with indexes")
    if len(counts) > 1:
        problems.append(f"tenants differ in their number of ix_ indexes: {sorted(counts)}")
    if invalid:
        problems.append(f"{invalid} invalid index(es) across tenants")
    return problems


def secondary_index_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_catalog.pg_indexes "
                "WHERE schemaname = (SELECT min(schema_name) FROM public.tenants) "
                "AND indexname LIKE 'ix\\_%'"
            )
        ).scalar_one()


# --------------------------------------------------------------------------- tenants


def new_tenant(i: int):
    from lms_app.tenancy.provisioning import NewTenant

    slug = slug_for(i)
    return NewTenant(slug, f"Bench School {i}", f"admin@{slug}.test", ADMIN_PASSWORD)


_worker_engine: Engine | None = None


def _init_create_worker(url: str) -> None:
    global _worker_engine
    from config.settings import PoolSettings
    from lms_app.db.engines import make_engine

    _worker_engine = make_engine(url, PoolSettings(size=1, max_overflow=0))


def _create_one(i: int) -> float:
    from lms_app.tenancy.provisioning import create_tenant

    assert _worker_engine is not None
    started = time.perf_counter()
    create_tenant(_worker_engine, new_tenant(i))
    return time.perf_counter() - started


def create_range(url: str, start: int, stop: int, jobs: int, desc: str) -> float:
    """Create tenants start..stop-1 with create_tenant in `jobs` processes; wall seconds.

    Processes, not threads: Alembic's `op`/`context` are module-level proxies.
    """
    if stop <= start:
        return 0.0
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with (
        ProcessPoolExecutor(
            max_workers=jobs, mp_context=ctx, initializer=_init_create_worker, initargs=(url,)
        ) as pool,
        tqdm(total=stop - start, desc=desc, unit="tenant", file=sys.stderr) as bar,
    ):
        for _ in pool.map(_create_one, range(start, stop), chunksize=4):
            bar.update(1)
    return time.perf_counter() - started


def downgrade_all(engine: Engine, revision: str) -> float:
    from lms_app.tenancy.migrations import downgrade_tenant
    from lms_app.tenancy.provisioning import list_tenants

    tenants = list_tenants(engine)
    started = time.perf_counter()
    for t in tqdm(tenants, desc=f"downgrade to {revision}", unit="tenant", file=sys.stderr):
        with engine.connect() as conn:
            downgrade_tenant(conn, t.schema_name, revision)
            conn.commit()
    return time.perf_counter() - started


# --------------------------------------------------------------------------- subprocesses


@dataclass
class Run:
    seconds: float
    returncode: int
    stdout: str
    stderr: str


def run_cli(args: list[str], env: dict[str, str]) -> Run:
    started = time.perf_counter()
    proc = subprocess.run(
        [flask_bin(), "--app", "wsgi", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return Run(time.perf_counter() - started, proc.returncode, proc.stdout, proc.stderr)


def cli_env(url: str, instance_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        LMS_ENV="test",
        SECRET_KEY="tenancy-bench-secret-key-not-for-production",
        PLATFORM_API_KEY="tenancy-bench-platform-key-not-for-production",
        LMS_INSTANCE_PATH=str(instance_path),
        LOG_LEVEL="WARNING",
    )
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_REPLICA_URLS", None)
    return env


UPGRADE_LINE = re.compile(
    r"head (?P<head>\S+): (?P<upgraded>\d+) upgraded, (?P<skipped>\d+) already at head, "
    r"(?P<failed>\d+) failed, (?P<total>\d+) total in (?P<seconds>[\d.]+) s"
)


def db_upgrade(env: dict[str, str], jobs: int, label: str) -> tuple[Run, dict[str, str]]:
    print(f"-- {label}: flask --app wsgi db-upgrade --jobs {jobs}", file=sys.stderr, flush=True)
    run = run_cli(["db-upgrade", "--jobs", str(jobs)], env)
    match = UPGRADE_LINE.search(run.stdout)
    if run.returncode != 0 or match is None:
        raise SystemExit(
            f"db-upgrade failed (exit {run.returncode}):\n{run.stdout}\n{run.stderr[-4000:]}"
        )
    print(f"   {match.group(0)}; wall {run.seconds:.2f} s", file=sys.stderr, flush=True)
    return run, match.groupdict()


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=200, help="tenants for steps 2-4")
    parser.add_argument("--jobs", type=int, default=2, help="db-upgrade --jobs")
    parser.add_argument(
        "--noop-tenants", type=int, default=1000, help="tenants for step 5 (0: skip it)"
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_URL,
        help="throw-away database: dropped and recreated (default %(default)s)",
    )
    parser.add_argument("--create-runs", type=int, default=20, help="timed create_tenant calls")
    parser.add_argument(
        "--from-revision",
        default="0001",
        help="step 3 downgrades every tenant to this revision first (default %(default)s: "
        "every secondary index pending; 'previous' for the revision before head)",
    )
    parser.add_argument(
        "--create-jobs",
        type=int,
        default=os.cpu_count() or 2,
        help="processes for bulk creation (default: nproc)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument(
        "--i-know-it-is-dropped",
        action="store_true",
        help="allow a database whose name does not contain 'bench'",
    )
    args = parser.parse_args(argv)

    url_obj = make_url(args.database_url)
    if not url_obj.database or url_obj.database == "postgres":
        parser.error("--database-url must name a database (it is dropped and recreated)")
    if "bench" not in url_obj.database and not args.i_know_it_is_dropped:
        parser.error(
            f"refusing to drop database {url_obj.database!r}: its name lacks 'bench' "
            "(pass --i-know-it-is-dropped)"
        )
    if args.tenants < args.create_runs + 1:
        parser.error("--tenants must exceed --create-runs (one more goes through the CLI)")
    # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; lms_app pins psycopg2.
    url = url_from_settings(args.database_url)

    from config.settings import Settings
    from lms_app import create_app
    from lms_app.extensions import db
    from lms_app.tenancy.migrations import tenant_head, upgrade_public
    from lms_app.tenancy.provisioning import create_tenant

    results = Results()
    recreate_database(url)
    instance = Path(tempfile.mkdtemp(prefix="lms-bench-"))
    env = cli_env(url, instance)
    try:
        app = create_app(
            Settings(
                env="test",
                database_url=url,
                secret_key="bench",
                platform_api_key="bench",
                log_level="WARNING",
                instance_path=instance,
            )
        )
        with app.app_context():
            engine = db.engine
            upgrade_public(engine)
            facts = server_facts(engine)
            header(args, facts)
            head = tenant_head()

            # 1. tenants create ------------------------------------------------
            samples: list[float] = []
            for i in tqdm(
                range(args.create_runs), desc="create_tenant", unit="tenant", file=sys.stderr
            ):
                started = time.perf_counter()
                create_tenant(engine, new_tenant(i))
                samples.append((time.perf_counter() - started) * 1000)
            ms = samples
            results.add(
                "1. create_tenant() in process",
                f"{args.create_runs} runs",
                f"p50 {statistics.median(ms):.0f} ms, p95 {percentile(ms, 95):.0f} ms, "
                f"max {max(ms):.0f} ms",
                f"min {min(ms):.0f} ms; includes scrypt hash of the admin password",
            )

            startup = [run_cli(["tenants", "--help"], env).seconds for _ in range(3)]
            i = args.create_runs
            cli_slug = slug_for(i)
            run = run_cli(
                [
                    "tenants",
                    "create",
                    cli_slug,
                    "--name",
                    f"Bench School {i}",
                    "--admin-email",
                    f"admin@{cli_slug}.test",
                    "--admin-password",
                    ADMIN_PASSWORD,
                ],
                env,
            )
            if run.returncode != 0:
                raise SystemExit(f"tenants create failed:\n{run.stdout}\n{run.stderr}")
            inner = re.search(r"in (\d+) ms", run.stdout)
            start_s = statistics.median(startup)
            results.add(
                "1. `flask tenants create` (subprocess)",
                1,
                f"wall {run.seconds * 1000:.0f} ms",
                f"command's own timing {inner.group(1) if inner else '?'} ms; "
                f"process start-up (`tenants --help`, median of 3) {start_s * 1000:.0f} ms",
            )
            created = args.create_runs + 1

            # 2. bulk create -------------------------------------------------------
            secs = create_range(url, created, args.tenants, args.create_jobs, "bulk create")
            if args.tenants > created:
                n = args.tenants - created
                results.add(
                    "2. bulk create (not a result)",
                    f"{created}->{args.tenants}",
                    f"{secs:.1f} s, {n / secs:.1f} tenants/s",
                    f"create_tenant in {args.create_jobs} processes",
                )
            created = args.tenants
            problems = verify_all_at_head(engine, created)
            n_indexes = secondary_index_count(engine)

            # 3. one pending migration --------------------------------------------
            previous = (
                previous_revision(head) if args.from_revision == "previous" else args.from_revision
            )
            down_s = downgrade_all(engine, previous)
            results.add(
                f"3. downgrade all to {previous} (setup)",
                created,
                f"{down_s:.1f} s",
                "sequential, not part of the result",
            )
            run, parsed = db_upgrade(env, args.jobs, f"pending {previous}->{head}")
            check_counts(parsed, upgraded=created, skipped=0, results=results, label="3")
            results.add(
                f"3. db-upgrade --jobs {args.jobs}, {previous}->{head} pending",
                created,
                f"wall {run.seconds:.2f} s",
                f"in-command {float(parsed['seconds']):.2f} s; "
                f"{created / run.seconds:.1f} tenants/s, "
                f"{run.seconds / created * 1000:.0f} ms/tenant wall; "
                f"{n_indexes} CREATE INDEX CONCURRENTLY each",
            )
            problems += verify_all_at_head(engine, created)

            # 4. no-op ---------------------------------------------------------------
            run, parsed = db_upgrade(env, args.jobs, "no-op")
            check_counts(parsed, upgraded=0, skipped=created, results=results, label="4")
            results.add(
                f"4. db-upgrade --jobs {args.jobs}, nothing pending",
                created,
                f"wall {run.seconds:.2f} s",
                f"in-command {float(parsed['seconds']):.2f} s; rest is process start-up",
            )

            # 5. no-op at --noop-tenants -------------------------------------------
            if args.noop_tenants > created:
                secs = create_range(
                    url, created, args.noop_tenants, args.create_jobs, "create up to noop"
                )
                n = args.noop_tenants - created
                results.add(
                    "5. bulk create (not a result)",
                    f"{created}->{args.noop_tenants}",
                    f"{secs:.1f} s, {n / secs:.1f} tenants/s",
                    f"create_tenant in {args.create_jobs} processes",
                )
                created = args.noop_tenants
                problems += verify_all_at_head(engine, created)
                run, parsed = db_upgrade(env, args.jobs, f"no-op at {created}")
                check_counts(parsed, upgraded=0, skipped=created, results=results, label="5")
                results.add(
                    f"5. db-upgrade --jobs {args.jobs}, nothing pending",
                    created,
                    f"wall {run.seconds:.2f} s",
                    f"in-command {float(parsed['seconds']):.2f} s; rest is process start-up",
                )
                problems += verify_all_at_head(engine, created)
            results.problems += problems
            engine.dispose()
    finally:
        if args.keep:
            print(f"kept database {url}", file=sys.stderr)
        else:
            drop_database(url)

    print_table(results)
    return 1 if results.problems else 0


def url_from_settings(url: str) -> str:
    from config.settings import normalize_database_url

    return normalize_database_url(url)


def previous_revision(head: str) -> str:
    from alembic.script import ScriptDirectory

    from lms_app.tenancy.migrations import TENANT_SCRIPTS, alembic_config

    script = ScriptDirectory.from_config(alembic_config(TENANT_SCRIPTS)).get_revision(head)
    down = script.down_revision if script else None
    if not isinstance(down, str):
        raise SystemExit(f"tenant head {head} has no single previous revision")
    return down


def check_counts(
    parsed: dict[str, str], *, upgraded: int, skipped: int, results: Results, label: str
) -> None:
    got = (int(parsed["upgraded"]), int(parsed["skipped"]), int(parsed["failed"]))
    if got != (upgraded, skipped, 0):
        results.problems.append(
            f"step {label}: expected {upgraded} upgraded/{skipped} skipped/0 failed, got {got}"
        )


def header(args: argparse.Namespace, facts: dict[str, str]) -> None:
    import alembic
    import sqlalchemy

    lines = [
        "lms_app tenancy benchmark",
        f"PostgreSQL {facts['version']} (max_connections {facts.get('max_connections')}, "
        f"shared_buffers {facts.get('shared_buffers')}, fsync {facts.get('fsync')}, "
        f"synchronous_commit {facts.get('synchronous_commit')})",
        f"machine: nproc {os.cpu_count()}, {cpu_model()}, {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"Alembic {alembic.__version__}",
        f"database {make_url(args.database_url).render_as_string(hide_password=True)}; "
        f"--tenants {args.tenants} --jobs {args.jobs} --noop-tenants {args.noop_tenants}",
        f"code: {code_version()}; load average at start {load_average()}",
    ]
    HEADER.extend(lines)
    for line in lines:
        print(line, file=sys.stderr)


HEADER: list[str] = []


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def code_version() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{PROJECT_ROOT} (not a git checkout)"
    return f"git {commit}" + (" with uncommitted changes" if dirty else "")


def print_table(results: Results) -> None:
    cols = ("step", "tenants", "result", "note")
    rows = [(r.step, r.tenants, r.result, r.note) for r in results.rows]
    widths = [max(len(c), *(len(r[k]) for r in rows)) for k, c in enumerate(cols)]

    def fmt(values: tuple[str, ...]) -> str:
        return " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    print()
    for line in HEADER:
        print(line)
    print()
    print(fmt(cols))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(fmt(r))
    print()
    print(f"load average at end {load_average()} (other work on the machine skews every figure)")
    if results.problems:
        print("PROBLEMS:")
        for p in results.problems:
            print(f"  - {p}")
    else:
        print("checks: every tenant at head, same ix_ index count everywhere, no invalid index")


if __name__ == "__main__":
    sys.exit(main())
