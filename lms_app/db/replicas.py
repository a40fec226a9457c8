"""Streaming replicas of the primary: which ones may serve a read, and how far behind.

Each process keeps, per replica, what it last learned about it: up or out (and until
when), how much WAL it has replayed, and how far behind the primary that puts it.
A status older than REPLICA_CHECK_SECONDS is refreshed on the next routing decision
(one statement on the replica, one `pg_current_wal_lsn()` on the primary for all of
them, at most once per interval per process), so the read path itself never waits
on a health check for longer than that.

Lag in seconds is measured against the primary, not with
`now() - pg_last_xact_replay_timestamp()`: that grows while the primary is idle and a
caught-up replica would look late. Each refresh samples the primary's WAL position;
a replica's lag is the age of the oldest sample it has not replayed yet (zero when it
has replayed the latest). Lag in bytes is the primary's position minus the replay
position.

A replica whose connection fails is out for REPLICA_BACKOFF_SECONDS, doubling on
each consecutive failure up to 16 times that; a replica that left recovery (it was
promoted: a new, diverging primary) is out until it is back in recovery.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from lms_app.observability import metrics
from lms_app.observability.metrics import REPLICA_LAG, REPLICA_ROUTING

log = logging.getLogger(__name__)

_STATUS = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() - '0/0'::pg_lsn,"
    " extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
)
_PRIMARY_LSN = text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
_MAX_BACKOFF_FACTOR = 16


def lsn_int(value: Any) -> int:
    """An LSN as an integer: from PostgreSQL's `X/Y` text, or a numeric difference."""
    if isinstance(value, str) and "/" in value:
        high, low = value.split("/")
        return (int(high, 16) << 32) + int(low, 16)
    return int(value)


@dataclass
class Replica:
    name: str  # host:port/database, for logs and counters (no credentials)
    engine: Engine
    up: bool = False
    checked_at: float = float("-inf")
    out_until: float = 0.0
    failures: int = 0
    in_recovery: bool = True
    replay_lsn: int = 0
    lag_bytes: int = 0
    lag_s: float = 0.0

    def __post_init__(self) -> None:
        self.counter = f"replica:{self.name}"  # routing count key, made once

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "up": self.up,
            "lag_bytes": self.lag_bytes,
            "lag_seconds": round(self.lag_s, 3),
            "replay_lsn": self.replay_lsn,
            "consecutive_failures": self.failures,
        }


@dataclass
class ReplicaSet:
    replicas: Sequence[Replica]
    primary: Engine
    check_s: float
    max_lag_s: float
    max_lag_bytes: int
    backoff_s: float
    counts: Counter[str] = field(default_factory=Counter)
    # (monotonic time, primary LSN) of recent refreshes, oldest first.
    _samples: deque[tuple[float, int]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _turn: itertools.count = field(default_factory=itertools.count)
    # Derived from the replicas' state by _settle(): those fit to serve, and when
    # the next status check is due.
    _fit: list[Replica] = field(default_factory=list)
    _next_check: float = float("-inf")

    def __post_init__(self) -> None:
        self._settle()

    def choose(self, min_lsn: int = 0) -> Replica | None:
        """A replica fit to serve a read that must see WAL up to `min_lsn`, round-robin
        among those fit; None: read from the primary."""
        if time.monotonic() >= self._next_check:
            self._refresh_if_due()
        fit = self._fit
        if not fit:
            self.count("primary_no_healthy_replica")
            return None
        if min_lsn:
            fit = [r for r in fit if r.replay_lsn >= min_lsn]
            if not fit:
                self.count("primary_read_your_writes")
                return None
        chosen = fit[next(self._turn) % len(fit)]
        self.count(chosen.counter)
        return chosen

    def count(self, decision: str) -> None:
        """One routing decision (or failure), here and in the metrics."""
        self.counts[decision] += 1
        metrics.inc(REPLICA_ROUTING, decision)

    def _serves(self, replica: Replica) -> bool:
        return (
            replica.up
            and replica.in_recovery
            and replica.lag_s <= self.max_lag_s
            and replica.lag_bytes <= self.max_lag_bytes
        )

    def _settle(self) -> None:
        """Recompute what routing reads per request, after any change of state."""
        self._fit = [r for r in self.replicas if self._serves(r)]
        self._next_check = min(
            (
                max(r.checked_at + self.check_s, r.out_until if not r.up else r.checked_at)
                for r in self.replicas
            ),
            default=float("inf"),
        )

    def failed(self, replica: Replica, error: BaseException) -> None:
        """A read on `replica` failed for want of the server: take it out for a while."""
        replica.failures += 1
        backoff = self.backoff_s * min(2 ** (replica.failures - 1), _MAX_BACKOFF_FACTOR)
        replica.up = False
        replica.out_until = time.monotonic() + backoff
        self._settle()
        self.count("replica_failures")
        log.warning(
            "replica_out replica=%s error=%s backoff_s=%.1f",
            replica.name,
            type(error).__name__,
            backoff,
        )

    def _refresh_if_due(self) -> None:
        now = time.monotonic()
        if not self._lock.acquire(blocking=False):
            return  # another thread is at it: route on what is known
        try:
            self.refresh(now, only_due=True)
        finally:
            self._lock.release()

    def refresh(self, now: float | None = None, only_due: bool = False) -> None:
        """Sample the primary's position and check the replicas (those due, or all)."""
        now = time.monotonic() if now is None else now
        try:
            with self.primary.connect() as conn:
                primary_lsn = int(conn.execute(_PRIMARY_LSN).scalar_one())
        except Exception as exc:  # the primary's own trouble shows on the primary path
            log.warning("replica_check_primary_failed error=%s", type(exc).__name__)
            self._next_check = now + self.check_s
            return
        self._samples.append((now, primary_lsn))
        # Keep the newest sample older than the horizon: a replica behind it is
        # known to be at least that late, however long this process sat idle.
        horizon = now - 4 * max(self.max_lag_s, self.check_s)
        while len(self._samples) > 1 and self._samples[1][0] < horizon:
            self._samples.popleft()
        for replica in self.replicas:
            if not only_due or now - replica.checked_at >= self.check_s:
                self._check(replica, now, primary_lsn)
        self._settle()

    def _check(self, replica: Replica, now: float, primary_lsn: int) -> None:
        if not replica.up and now < replica.out_until:
            return
        replica.checked_at = now
        try:
            with replica.engine.connect() as conn:
                in_recovery, replay, replay_age = conn.execute(_STATUS).one()
        except Exception as exc:
            self.failed(replica, exc)
            return
        if not in_recovery:
            if replica.in_recovery:
                log.warning("replica_promoted replica=%s: not read from", replica.name)
            replica.in_recovery, replica.up = False, False
            return
        if not replica.up:
            log.info("replica_up replica=%s", replica.name)
        replica.up, replica.in_recovery, replica.failures = True, True, 0
        replica.replay_lsn = int(replay or 0)
        replica.lag_bytes = max(0, primary_lsn - replica.replay_lsn)
        replica.lag_s = self._lag_s(replica.replay_lsn, now, replay_age)
        REPLICA_LAG.labels(replica.name).set(min(replica.lag_s, 1e9))

    def _lag_s(self, replay_lsn: int, now: float, replay_age: Any = None) -> float:
        """How long ago the primary had WAL this replica has not replayed yet."""
        for i, (sampled_at, lsn) in enumerate(self._samples):
            if lsn > replay_lsn:
                late = now - sampled_at
                since = self._samples[i - 1][0] if i > 0 else float("-inf")
                if sampled_at - since > 2 * self.check_s:
                    # The WAL appeared somewhere in a long gap between samples (a
                    # fresh or idle process): take the replica's own bound, the age
                    # of the last transaction it replayed, up to the gap's start.
                    bound = float(replay_age) if replay_age is not None else float("inf")
                    late = max(late, min(now - since, bound))
                return late
        return 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "replicas": [r.describe() for r in self.replicas],
            "routing": dict(self.counts),
        }
