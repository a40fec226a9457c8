"""Two configurations of lms_app, each started as the Procfile starts it, compared
under wrk on the same URLs, alternating round by round so that drift on a shared
machine hits both (bench/replica_bench.py, bench/monitoring_bench.py)."""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import api_bench
import data as bench_data
import load
from sqlalchemy.engine import make_url


def arguments(description: str) -> argparse.ArgumentParser:
    """The options both A/B benchmarks take."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--database-url", default=bench_data.DEFAULT_URL)
    parser.add_argument("--redis-url", default=load.DEFAULT_REDIS_URL)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--seconds", type=int, default=6, help="wrk seconds per URL per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=load.DEFAULT_SEED)
    return parser


@dataclass
class Bench:
    url: str
    info: Any
    env: dict[str, str]


def prepare(args: argparse.Namespace) -> Bench:
    """The bench data (bench/data.py), settled, and the environment both apps share."""
    url = make_url(args.database_url).render_as_string(hide_password=False)
    info = bench_data.build(url, reuse=args.reuse)
    api_bench.settle(url, info.schema)
    print(f"load average at start: {api_bench.load_now()}")
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": args.redis_url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "PLATFORM_API_KEY": secrets.token_urlsafe(32),
        "LMS_ENV": "production",
    }
    return Bench(url, info, env)


def learner_reads(bench: Bench, seed: int) -> tuple[int, dict[str, str], dict[str, str]]:
    """A learner (id, headers with a minted token) and the per-learner reads to compare."""
    user, course, lesson = load.wrk_fixture(bench.url, bench.info.schema, seed)
    token = load.mint_tokens(bench.env, bench.info.slug, bench.info.schema, [user])[user]
    headers = {"X-Tenant": bench.info.slug, "Authorization": f"Bearer {token}"}
    paths = {
        "course progress": f"{load.API}/courses/{course}/progress",
        "me/courses": f"{load.API}/me/courses",
        "lesson": f"{load.API}/lessons/{lesson}",
    }
    return user, headers, paths


def serve_both(
    stack: ExitStack,
    env: dict[str, str],
    configs: dict[str, dict[str, str]],
    name: str,
    roots: dict[str, Path] | None = None,
) -> dict[str, load.Server]:
    """Each configuration's server (env plus its own variables), as the Procfile
    starts it: only these variables, plus PATH and HOME (as bench/load.py does).
    `roots` runs a configuration from another checkout (e.g. a git worktree of an
    older commit); the others run from this one."""
    base = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TZ") if k in os.environ}
    base["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    servers = {}
    for label, extra in configs.items():
        port = api_bench.free_port()
        servers[label] = stack.enter_context(
            load.serve(
                f"{name}_{label.replace(' ', '_')}",
                load.procfile_web_command(),
                (roots or {}).get(label, load.PROJECT_ROOT),
                {**base, **env, **extra, "PORT": str(port)},
                "/healthz",
                port,
            )
        )
    return servers


def compare(
    servers: dict[str, load.Server],
    paths: dict[str, str],
    headers: dict[str, str],
    rounds: int,
    seconds: int,
) -> str:
    """Median req/s per URL and configuration, and the second's cost against the first."""
    results: dict[tuple[str, str], list[float]] = {}
    for name, path in paths.items():
        for server in servers.values():
            api_bench.load_test("warm", server.base + path, headers, 3, 32)
        for _ in range(rounds):
            for label, server in servers.items():
                ran = api_bench.load_test(label, server.base + path, headers, seconds, 32)
                if ran.errors:
                    raise RuntimeError(f"{label} {name}: {ran.errors} errors")
                results.setdefault((name, label), []).append(ran.rps)
    first, second = list(servers)
    rows = []
    for name in paths:
        a = statistics.median(results[(name, first)])
        b = statistics.median(results[(name, second)])
        rows.append([name, f"{a:.0f}", f"{b:.0f}", f"{(1 - b / a) * 100:+.1f} %"])
    title = (
        f"## wrk -t2 -c32, {rounds} rounds of {seconds} s per URL, the two apps alternating"
        f" (req/s, median of rounds; cost = {second} against {first})"
    )
    return f"\n{title}\n" + load.table(["endpoint", first, second, "cost"], rows)
