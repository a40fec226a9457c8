"""Two configurations of lms_app, each started as the Procfile starts it, compared
under wrk on the same URLs, alternating round by round so that drift on a shared
machine hits both (bench/replica_bench.py, bench/monitoring_bench.py)."""

from __future__ import annotations

import os
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

import api_bench
import load


def serve_both(
    stack: ExitStack, env: dict[str, str], configs: dict[str, dict[str, str]], name: str
) -> dict[str, load.Server]:
    """Each configuration's server (env plus its own variables), as the Procfile
    starts it: only these variables, plus PATH and HOME (as bench/load.py does)."""
    base = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TZ") if k in os.environ}
    base["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    servers = {}
    for label, extra in configs.items():
        port = api_bench.free_port()
        servers[label] = stack.enter_context(
            load.serve(
                f"{name}_{label.replace(' ', '_')}",
                load.procfile_web_command(),
                load.PROJECT_ROOT,
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
