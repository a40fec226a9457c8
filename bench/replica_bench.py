"""Replica routing: what it costs per request, with no replica and with one.

Not a test. Issue 10, item 6. One run:

1. Builds (or with --reuse keeps) the benchmark database with bench/data.py, and
   makes a streaming replica of the cluster with pg_basebackup
   (tests/streaming_replica.py) on a spare port.
2. In process, in a GET request context of the bench school's app: the routing
   decision (`lms_app.db.routing.read_engine()`) with no replica configured and with
   one, for an anonymous request and for a user (that one includes the LSN check: one
   Redis GET of the user's last write position, and the comparison with the
   replica's replay position), in microseconds per request.
3. Over HTTP, the app started twice as the Procfile starts it (same config file,
   default settings, Redis on): once without DATABASE_REPLICA_URLS, once with the
   replica; wrk -t2 -c32 on course progress, /me/courses and a lesson, the two apps
   alternating per URL (--rounds times), so drift on a shared machine hits both.

    .venv/bin/python bench/replica_bench.py --reuse

The replica shares the machine's cores with the primary: it shows what routing
costs, not what a replica on its own host would add.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ab
import api_bench
import load

from tests.streaming_replica import StreamingReplica

# The two apps compared: without the replica, and with it (DATABASE_REPLICA_URLS).
CONFIGS = {"no replica": {"DATABASE_REPLICA_URLS": ""}, "one replica": {}}


def _seconds_per_request(app, tenant, person, n: int, decide: bool) -> float:
    """Best of 5: seconds per request context (a fresh one each time, since the
    decision is made once per request), with or without the routing decision."""
    from flask import g

    from lms_app.db import routing
    from lms_app.tenancy.context import tenant_scope

    tries = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            with app.test_request_context("/x"), tenant_scope(tenant):
                g.lms_read_only = True
                g.user = person
                if decide:
                    routing.read_engine()
        tries.append((time.perf_counter() - started) / n)
    return min(tries)


def in_process(env: dict[str, str], slug: str, user_id: int, n: int) -> list[list[str]]:
    """µs per routing decision, no replica vs one, anonymous vs a user."""
    from config.settings import Settings
    from lms_app import create_app
    from lms_app.db import routing
    from lms_app.extensions import db
    from lms_app.tenancy.registry import load_tenant

    rows = []
    for label, extra in CONFIGS.items():
        app = create_app(Settings.from_env({**env, **extra, "LOG_LEVEL": "WARNING"}))
        with app.app_context():
            tenant = load_tenant(db.engine, slug)
        for who, uid in (("anonymous", None), ("a user", user_id)):
            person = type("User", (), {"id": uid})() if uid else None
            with_decision = _seconds_per_request(app, tenant, person, n, decide=True)
            without = _seconds_per_request(app, tenant, person, n, decide=False)
            cost = (with_decision - without) * 1e6
            rows.append([label, who, f"{cost:.1f}"])
        counts = app.extensions.get("lms_replicas")
        if counts is not None:
            rows.append([label, "routing counts", str(dict(counts.counts))])
        with app.app_context():
            for engine in [*db.engines.values(), *routing.replica_engines(app)]:
                engine.dispose()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = ab.arguments(__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="in-process decisions per try")
    args = parser.parse_args(argv)
    bench = ab.prepare(args)
    with ExitStack() as stack:
        started = time.perf_counter()
        replica = StreamingReplica(bench.url, make_url(bench.url).database).start()
        stack.callback(replica.destroy)
        took = time.perf_counter() - started
        print(f"replica: pg_basebackup + start + streaming in {took:.1f} s")
        bench.env["DATABASE_REPLICA_URLS"] = replica.url
        user, headers, paths = ab.learner_reads(bench, args.seed)

        print("\n## routing decision per request, in process (µs above a bare request context)")
        rows = in_process(bench.env, bench.info.slug, user, args.calls)
        print(load.table(["configuration", "request", "µs"], rows, left=2))

        servers = ab.serve_both(stack, bench.env, CONFIGS, "replica_bench")
        print(ab.compare(servers, paths, headers, args.rounds, args.seconds))
        operator = {"Authorization": f"Bearer {bench.env['PLATFORM_API_KEY']}"}
        for label, server in servers.items():
            status, body = load.http_get(server.port, "/platform/replicas", operator)
            print(f"{label}: GET /platform/replicas (one worker) -> {status} {body.decode()[:400]}")
    print(f"load average at end: {api_bench.load_now()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
