"""The routing rules of lms_app.db.replicas on known replica states: balance, lag,
read-your-writes positions, back-off. (The real replica is in tests/test_replicas.py;
here the states are set by hand so every rule is pinned exactly.)"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine

from lms_app.db.replicas import Replica, ReplicaSet, lsn_int

NEVER_DUE = 3600.0


def replica(name: str, **state) -> Replica:
    # Engines are never connected here: every status is set by the test.
    engine = create_engine(f"postgresql+psycopg2://nobody@{name}:5432/none")
    fields = {"up": True, "checked_at": time.monotonic(), "replay_lsn": 1_000, **state}
    return Replica(name, engine, **fields)


def replica_set(*replicas: Replica, **options) -> ReplicaSet:
    primary = create_engine("postgresql+psycopg2://nobody@primary:5432/none")
    settings = {"check_s": NEVER_DUE, "max_lag_s": 5.0, "max_lag_bytes": 1 << 20, "backoff_s": 2.0}
    return ReplicaSet(list(replicas), primary, **{**settings, **options})


def test_reads_are_spread_over_the_replicas_fit_to_serve():
    a, b = replica("a"), replica("b")
    spread = replica_set(a, b)
    chosen = [spread.choose().name for _ in range(6)]
    assert sorted(chosen) == ["a", "a", "a", "b", "b", "b"]
    assert spread.counts["replica:a"] == 3 and spread.counts["replica:b"] == 3


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"up": False}, "down"),
        ({"in_recovery": False}, "promoted"),
        ({"lag_s": 5.5}, "too far behind in time"),
        ({"lag_bytes": (1 << 20) + 1}, "too far behind in bytes"),
    ],
)
def test_a_replica_unfit_to_serve_is_skipped(state, reason):
    bad, good = replica("bad", **state), replica("good")
    chooser = replica_set(bad, good)
    assert {chooser.choose().name for _ in range(4)} == {"good"}, reason
    alone = replica_set(replica("bad", **state))
    assert alone.choose() is None, reason
    assert alone.counts["primary_no_healthy_replica"] == 1


def test_a_user_reads_from_a_replica_only_once_it_replayed_their_write():
    behind, ahead = replica("behind", replay_lsn=900), replica("ahead", replay_lsn=1_100)
    chooser = replica_set(behind, ahead)
    assert {chooser.choose(min_lsn=1_000).name for _ in range(4)} == {"ahead"}
    assert {chooser.choose(min_lsn=1_100).name for _ in range(2)} == {"ahead"}
    assert chooser.choose(min_lsn=1_101) is None
    assert chooser.counts["primary_read_your_writes"] == 1
    assert {chooser.choose(min_lsn=0).name for _ in range(4)} == {"behind", "ahead"}


def test_a_failed_replica_is_out_for_a_back_off_that_doubles():
    flaky = replica("flaky")
    chooser = replica_set(flaky)
    backoffs = []
    for _ in range(6):
        before = time.monotonic()
        chooser.failed(flaky, ConnectionError("refused"))
        backoffs.append(round(flaky.out_until - before))
        assert chooser.choose() is None
        # No status check (a primary and a replica round trip) before the back-off ends.
        assert chooser._next_check >= flaky.out_until
    assert backoffs == [2, 4, 8, 16, 32, 32]  # doubling, capped at 16 x REPLICA_BACKOFF
    assert chooser.counts["replica_failures"] == 6


def test_lag_in_seconds_is_the_age_of_the_oldest_primary_position_not_replayed():
    chooser = replica_set()
    now = time.monotonic()
    chooser._samples.extend([(now - 9, 100), (now - 6, 200), (now - 3, 300), (now - 1, 300)])
    assert chooser._lag_s(300, now) == 0.0  # replayed the latest: caught up, however idle
    assert chooser._lag_s(250, now) == pytest.approx(3.0)
    assert chooser._lag_s(150, now) == pytest.approx(6.0)
    # Behind the oldest sample: at least its age, and the replica's own bound (the age
    # of the last transaction it replayed) when that is longer; unknown is too late.
    assert chooser._lag_s(50, now, replay_age=4.0) == pytest.approx(9.0)
    assert chooser._lag_s(50, now, replay_age=3600.0) == pytest.approx(3600.0)
    assert chooser._lag_s(50, now) == float("inf")


def test_a_fresh_process_does_not_take_a_late_replica_for_a_current_one():
    """Its first sample is now: a replica behind it must not read as 0 s late."""
    chooser = replica_set()
    now = time.monotonic()
    chooser._samples.append((now, 1_000))
    assert chooser._lag_s(900, now, replay_age=3600.0) == pytest.approx(3600.0)
    assert chooser._lag_s(1_000, now, replay_age=3600.0) == 0.0  # caught up: idle is fine


def test_a_process_back_from_idle_does_not_take_a_stuck_replica_for_a_current_one():
    """Samples an hour apart: the primary moved on somewhere in that hour."""
    chooser = replica_set(check_s=1.0)
    now = time.monotonic()
    chooser._samples.extend([(now - 3600, 1_000), (now, 2_000)])
    assert chooser._lag_s(1_000, now, replay_age=1800.0) == pytest.approx(1800.0)
    assert chooser._lag_s(1_000, now, replay_age=7200.0) == pytest.approx(3600.0)
    assert chooser._lag_s(2_000, now, replay_age=7200.0) == 0.0


def test_positions_read_as_integers():
    assert lsn_int("0/0") == 0
    assert lsn_int("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert lsn_int(12345) == 12345
