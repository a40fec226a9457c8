"""Monitoring and logging: what they cost per request (issue 11's goal: ≤ 3 %).

Not a test. One run: the bench data (bench/data.py), then the app started twice as
the Procfile starts it, with monitoring and logging on (the defaults: metrics,
statement statistics, pool watch, the JSON access line) and off (`METRICS=false`,
`ACCESS_LOG=false`), and wrk -t2 -c32 on course progress, /me/courses, a lesson and
/healthz, the two apps alternating round by round (bench/ab.py).

    .venv/bin/python bench/monitoring_bench.py --reuse
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ab
import api_bench


def main(argv: list[str] | None = None) -> int:
    args = ab.arguments(__doc__.splitlines()[0]).parse_args(argv)
    bench = ab.prepare(args)
    _, headers, paths = ab.learner_reads(bench, args.seed)
    paths["/healthz"] = "/healthz"
    configs = {"off": {"METRICS": "false", "ACCESS_LOG": "false"}, "on": {}}
    with ExitStack() as stack:
        servers = ab.serve_both(stack, bench.env, configs, "monitoring_bench")
        print(ab.compare(servers, paths, headers, args.rounds, args.seconds))
    print(f"load average at end: {api_bench.load_now()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
