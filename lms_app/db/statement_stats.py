"""Statement statistics by fingerprint since this process started, and from
pg_stat_statements when the server collects them: the seed's "top slow queries".

In-process figures are exact for this process and cost a dict update per statement;
each gunicorn worker keeps its own (GET /platform/slow-queries answers for the worker
that takes it, as /platform/cache-stats does). pg_stat_statements covers every
process and every server restart since its last reset, when the extension is
installed and preloaded; the report says why when it is not.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, text

TOP = 10


class StatementStats:
    def __init__(self) -> None:
        # fingerprint -> [calls, total ms, max ms, shape]
        self._stats: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def record(self, fingerprint: str, shape: str, elapsed_ms: float) -> None:
        found = self._stats.get(fingerprint)
        if found is None:
            with self._lock:
                found = self._stats.setdefault(fingerprint, [0, 0.0, 0.0, shape[:500]])
        found[0] += 1
        found[1] += elapsed_ms
        if elapsed_ms > found[2]:
            found[2] = elapsed_ms

    def top(self, n: int = TOP) -> dict[str, list[dict[str, Any]]]:
        rows = [
            {
                "fingerprint": fingerprint,
                "calls": calls,
                "total_ms": round(total, 3),
                "mean_ms": round(total / calls, 3),
                "max_ms": round(longest, 3),
                "statement": shape,
            }
            for fingerprint, (calls, total, longest, shape) in list(self._stats.items())
            if calls
        ]
        return {
            "by_mean": sorted(rows, key=lambda r: r["mean_ms"], reverse=True)[:n],
            "by_total": sorted(rows, key=lambda r: r["total_ms"], reverse=True)[:n],
        }


STATS = StatementStats()

_PG_STAT = text(
    "SELECT query, calls, total_exec_time, mean_exec_time, max_exec_time"
    " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
    " WHERE datname = current_database())"
    " ORDER BY {order} DESC LIMIT :n"
)


def server_top(engine: Engine, n: int = TOP) -> dict[str, Any]:
    """The server's view (pg_stat_statements: normalised text, no values), or why not."""
    out: dict[str, Any] = {"available": True}
    try:
        with engine.connect() as conn:
            for key, order in (("by_mean", "mean_exec_time"), ("by_total", "total_exec_time")):
                rows = conn.execute(text(_PG_STAT.text.format(order=order)), {"n": n}).all()
                out[key] = [
                    {
                        "statement": " ".join(query.split())[:500],
                        "calls": calls,
                        "total_ms": round(total, 3),
                        "mean_ms": round(mean, 3),
                        "max_ms": round(longest, 3),
                    }
                    for query, calls, total, mean, longest in rows
                ]
    except Exception as exc:
        # Not installed, or not in shared_preload_libraries: say so, never fail.
        return {"available": False, "reason": type(exc).__name__}
    return out
