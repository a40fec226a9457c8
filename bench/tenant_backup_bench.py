"""Backup and restore of one school at the size of the API benchmark (issue 13, part 4).

Builds (or, with ``--reuse``, finds) bench/data.py's school: 10,101 users, 10,000
courses, 100,000 lessons, 200,000 enrollments and ~1,000,000 lesson_progress rows,
in a database of its own. Then, as an operator would, it runs

    flask --app wsgi tenants export bench FILE
    flask --app wsgi tenants restore FILE --as bench_restored

as subprocesses, timing each (wall clock, process start included, and the
command's own figure), checks that the copy has the source's row counts, drops the
copy and the file, and prints the figures against the target: each step at most
60 s (the recovery time objective for one school is one minute).

    .venv/bin/python bench/tenant_backup_bench.py [--reuse] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from sqlalchemy import Engine, func, select, table, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.data import build, plain_engine  # noqa: E402

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/lms_bench_backup"
SOURCE = "bench"
COPY = "bench_restored"
TARGET_S = 60.0


def flask_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "wsgi", *args]


def run(url: str, *args: str) -> tuple[float, str]:
    """Run a CLI command as an operator would; its wall time and stdout."""
    env = {**os.environ, "DATABASE_URL": url}
    started = time.perf_counter()
    done = subprocess.run(
        flask_command(*args), cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed with exit code {done.returncode}")
    return seconds, done.stdout.strip().splitlines()[-1]


def counts(engine: Engine, schema: str) -> dict[str, int]:
    """Rows per table of `schema`, the tables as the snapshot lists them."""
    from lms_app.tenancy.schema_catalog import tables

    with engine.connect() as conn:
        names = sorted(entry.name for entry in tables(conn, schema))
        return {
            name: conn.execute(
                select(func.count()).select_from(table(name, schema=schema))
            ).scalar_one()
            for name in names
        }


def schema_of(engine: Engine, slug: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT schema_name FROM public.tenants WHERE slug = :s"), {"s": slug}
        ).scalar_one_or_none()


def drop_copy(url: str, engine: Engine) -> None:
    if schema_of(engine, COPY) is not None:
        run(url, "tenants", "drop", COPY, "--yes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--reuse", action="store_true", help="keep a complete database")
    parser.add_argument("--dir", default=None, help="where the snapshot file goes (a tmp dir)")
    args = parser.parse_args(argv)
    url = args.database_url

    build(url, reuse=args.reuse, floor=False)
    engine = plain_engine(url)
    drop_copy(url, engine)  # left over from an interrupted run
    source_schema = schema_of(engine, SOURCE)
    assert source_schema is not None
    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
    rows = counts(engine, source_schema)
    print(
        f"lms_app tenant backup benchmark: PostgreSQL {version}, nproc {os.cpu_count()}, "
        f"database {make_url(url).database}",
    )
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("rows: " + ", ".join(f"{name} {n:,}" for name, n in rows.items()))
    print(f"total {sum(rows.values()):,} rows")

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="lms-backup-") as workdir:
        file = Path(workdir) / "bench.lms.zip"
        startup, _ = run(url, "tenants", "--help")
        export_s, export_line = run(url, "tenants", "export", SOURCE, str(file))
        size = file.stat().st_size
        restore_s, restore_line = run(url, "tenants", "restore", str(file), "--as", COPY)
        copy_schema = schema_of(engine, COPY)
        assert copy_schema is not None
        copied = counts(engine, copy_schema)
        drop_copy(url, engine)
    engine.dispose()

    print(f"process start (flask tenants --help): {startup:.1f} s")
    print(f"export:  {export_s:5.1f} s wall  | {export_line}")
    print(f"restore: {restore_s:5.1f} s wall  | {restore_line}")
    print(f"file: {size:,} bytes ({size / 2**20:.1f} MiB)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    problems = []
    if copied != rows:
        problems.append(f"restored row counts differ: {copied} != {rows}")
    for step, seconds in (("export", export_s), ("restore", restore_s)):
        verdict = "PASS" if seconds <= TARGET_S else "FAIL"
        print(f"{verdict} {step} {seconds:.1f} s <= {TARGET_S:.0f} s")
        if verdict == "FAIL":
            problems.append(f"{step} over {TARGET_S:.0f} s")
    if problems:
        print("PROBLEMS: " + "; ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
