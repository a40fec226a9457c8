"""Monitoring and logging: what they cost per request (issue 11's goal: ≤ 3 %).

Not a test. One run: the bench data (bench/data.py), then the app started twice as
the Procfile starts it, with monitoring and logging on (the defaults: metrics,
statement statistics, pool watch, the JSON access line) and off (`METRICS=false`,
`ACCESS_LOG=false`), and wrk -t2 -c32 on course progress, /me/courses, a lesson and
/healthz, the two apps alternating round by round (bench/ab.py).

    .venv/bin/python bench/monitoring_bench.py --reuse
"""

from __future__ import annotations

import argparse
import secrets
import sys
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ab
import api_bench
import data as bench_data
import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=bench_data.DEFAULT_URL)
    parser.add_argument("--redis-url", default=load.DEFAULT_REDIS_URL)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--seconds", type=int, default=6, help="wrk seconds per URL per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=load.DEFAULT_SEED)
    args = parser.parse_args(argv)
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
    user, course, lesson = load.wrk_fixture(url, info.schema, args.seed)
    token = load.mint_tokens(env, info.slug, info.schema, [user])[user]
    configs = {"off": {"METRICS": "false", "ACCESS_LOG": "false"}, "on": {}}
    with ExitStack() as stack:
        servers = ab.serve_both(stack, env, configs, "monitoring_bench")
        headers = {"X-Tenant": info.slug, "Authorization": f"Bearer {token}"}
        paths = {
            "course progress": f"{load.API}/courses/{course}/progress",
            "me/courses": f"{load.API}/me/courses",
            "lesson": f"{load.API}/lessons/{lesson}",
            "/healthz": "/healthz",
        }
        print(ab.compare(servers, paths, headers, args.rounds, args.seconds))
    print(f"load average at end: {api_bench.load_now()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
