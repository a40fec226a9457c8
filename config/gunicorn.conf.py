"""gunicorn settings from the environment (Heroku sets PORT and WEB_CONCURRENCY).

Each worker holds two pools on the primary (primary and autocommit read pool) and
one per replica (DATABASE_REPLICA_URLS). A sync worker serves one request at a time
and so holds at most one connection per pool; with GUNICORN_THREADS > 1,
WEB_CONCURRENCY x 2 x min(threads, DB_POOL_SIZE + DB_MAX_OVERFLOW) must stay below
the primary's max_connections, and WEB_CONCURRENCY x min(threads,
DB_REPLICA_POOL_SIZE + DB_REPLICA_MAX_OVERFLOW) below each replica's (or put
PgBouncer in transaction mode in front, with DB_PREPARED_STATEMENTS=false before
PgBouncer 1.21; lms_app keeps no other state on a connection).
"""

import os
import tempfile

# Before anything imports prometheus_client (the app, and config.gunicorn_output
# through lms_app): its values go to files every worker writes, so GET /metrics
# answers for all of them (lms_app.observability.metrics). A fresh directory per
# server start, unless the platform names one.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="lms-metrics-"))

from config import gunicorn_output

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# Sync workers, two per core (measured with bench/load.py, 1,000 learners on 2
# cores: 2 sync workers p99 85 ms, 4 sync workers 20 ms, 2 gthread x 4 threads 37 ms).
# A sync worker is idle while it waits on PostgreSQL, Redis or the client's close;
# a second one per core fills that time without threads contending for the GIL.
# Heroku sets WEB_CONCURRENCY from the dyno's memory.
# The cores this process may use (a container's share, not the host's).
_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
workers = int(os.environ.get("WEB_CONCURRENCY", str(2 * (_cores or 1))))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Recycling guards against slow leaks; it must not restart a busy worker every few
# seconds (at 5,000 requests it did, every 10-30 s under 1,000 learners, with a stall
# each time). The wide jitter keeps two workers from restarting together.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "200000"))
max_requests_jitter = max_requests // 2
# The app writes its own JSON access line (lms_app.observability.access_log): no
# query strings, no personal data, a request id, at a fraction of the cost.
accesslog = None
# gunicorn's own error log and error pages follow the same rules (no request lines
# or query strings logged; JSON, not HTML): see config/gunicorn_output.py.
logger_class = "config.gunicorn_output.RedactingLogger"
gunicorn_output.install()
# Connections are opened lazily after fork; nothing to share from the master.
preload_app = False


def when_ready(server) -> None:
    """Warn with the numbers when the workers' pools could exceed max_connections."""
    from config import connection_budget

    try:
        connection_budget.check(workers, server.log)
    except Exception as exc:  # a settings error shows when the workers start
        server.log.warning(f"connection_budget: not checked ({type(exc).__name__})")


def child_exit(server, worker) -> None:
    """A worker's live gauges (connections in use) leave with it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker) -> None:
    """Open the new worker's connections before it accepts a request, and start
    adding its metrics to the shared files once a second."""
    from lms_app.observability.batching import BATCH
    from lms_app.observability.warmup import warm_up

    warm_up(worker.wsgi)
    BATCH.start_flusher()


def worker_exit(server, worker) -> None:
    """The worker's last second of metrics, before its files are read without it."""
    from lms_app.observability.batching import BATCH

    BATCH.flush()
