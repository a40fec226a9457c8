"""A real streaming replica of the test cluster, for tests and benchmarks.

`pg_basebackup -R` copies the primary into a temporary directory; the copy gets a
minimal postgresql.conf and pg_hba.conf of its own (Debian keeps the primary's
outside its data directory, so the copy has none) and is started with `pg_ctl` on a
spare port, as the `postgres` OS user when this runs as root (PostgreSQL refuses to
run as root). `start()` returns once the replica streams from the primary.

Nothing here skips: missing tools or a primary that refuses replication connections
raise ReplicaUnavailable with what to do (`.ci/run` allows replication from
localhost before the tests run).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
from sqlalchemy.engine import make_url

from tests.servers import free_port

START_TIMEOUT_S = 120


class ReplicaUnavailable(RuntimeError):
    pass


class StreamingReplica:
    def __init__(self, primary_url: str, database: str) -> None:
        url = make_url(primary_url)
        self.primary_host = url.host or "127.0.0.1"
        self.primary_port = url.port or 5432
        self.user = url.username
        self.database = database
        self.port = free_port()
        self._primary_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.bindir = self._bindir()
        self.root: Path | None = None

    # --- set-up -----------------------------------------------------------------

    def _bindir(self) -> Path:
        with psycopg2.connect(self._primary_dsn) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version_num")
            major = int(cur.fetchone()[0]) // 10000
        conn.close()
        candidates = [Path(f"/usr/lib/postgresql/{major}/bin")]
        found = shutil.which("pg_basebackup")
        if found:
            candidates.append(Path(found).parent)
        for bindir in candidates:
            if all((bindir / tool).exists() for tool in ("pg_basebackup", "pg_ctl")):
                return bindir
        raise ReplicaUnavailable(
            f"pg_basebackup and pg_ctl of PostgreSQL {major} not found (looked in "
            f"{', '.join(map(str, candidates))}); install the server package "
            f"(Debian: postgresql-{major})"
        )

    def _replication_role(self) -> str:
        with psycopg2.connect(self._primary_dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT rolname FROM pg_roles WHERE rolcanlogin AND (rolreplication OR"
                " rolsuper) ORDER BY rolname = current_user DESC, rolname = 'postgres' DESC"
            )
            row = cur.fetchone()
        conn.close()
        if row is None:
            raise ReplicaUnavailable("no login role with REPLICATION on the primary")
        return row[0]

    @staticmethod
    def _as_postgres(argv: list[str]) -> list[str]:
        """`argv` run as the postgres OS user when we are root (the server refuses root)."""
        if os.geteuid() != 0:
            return argv
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", "postgres", "--", *argv]
        return ["su", "postgres", "-c", shlex.join(argv)]

    def _checked(self, argv: list[str]) -> subprocess.CompletedProcess:
        done = subprocess.run(self._as_postgres(argv), capture_output=True, text=True)
        if done.returncode != 0:
            raise ReplicaUnavailable(
                f"{Path(argv[0]).name} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-800:]}"
            )
        return done

    def start(self) -> StreamingReplica:
        self.root = Path(tempfile.mkdtemp(prefix="lms-replica-"))
        data = self.root / "data"
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        os.chmod(self.root, 0o700)
        role = self._replication_role()
        try:
            self._checked(
                [
                    str(self.bindir / "pg_basebackup"),
                    "-h", self.primary_host, "-p", str(self.primary_port), "-U", role,
                    "-D", str(data), "-R", "-X", "stream", "--checkpoint=fast",
                    "--no-sync",
                ]
            )  # fmt: skip
        except ReplicaUnavailable as exc:
            hint = ""
            if "pg_hba.conf" in str(exc) and "replication" in str(exc):
                hint = (
                    " -- the primary refuses replication connections from localhost: add"
                    " 'host replication all 127.0.0.1/32 trust' to its pg_hba.conf and"
                    " reload (.ci/run does this)"
                )
            raise ReplicaUnavailable(f"{exc}{hint}") from None
        self._write_config(data)
        self.ctl("start", "-w", "-t", "60", "-l", str(self.root / "server.log"))
        self._wait_streaming()
        return self

    def _primary_settings(self) -> dict[str, str]:
        """Settings a hot standby may not have lower than its primary."""
        names = (
            "max_connections",
            "max_worker_processes",
            "max_wal_senders",
            "max_prepared_transactions",
            "max_locks_per_transaction",
            "shared_buffers",  # so a benchmark reads both servers alike
        )
        with psycopg2.connect(self._primary_dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                (list(names),),
            )
            found = {name: f"'{value}'" for name, value in cur.fetchall()}
        conn.close()
        return found

    def _write_config(self, data: Path) -> None:
        conf = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "hot_standby": "on",
            "fsync": "off",
            "wal_receiver_status_interval": "'1s'",
            "max_standby_streaming_delay": "'5s'",
            "logging_collector": "off",
            **self._primary_settings(),
        }
        (data / "postgresql.conf").write_text("".join(f"{k} = {v}\n" for k, v in conf.items()))
        (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for name in ("postgresql.conf", "pg_hba.conf"):
                os.chown(data / name, owner.pw_uid, owner.pw_gid)

    def ctl(self, action: str, *options: str) -> None:
        assert self.root is not None
        self._checked(
            [str(self.bindir / "pg_ctl"), action, "-D", str(self.root / "data"), *options]
        )

    def _wait_streaming(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                status = self.query(
                    "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)"
                )
                if status == (True, "streaming"):
                    return
                last = repr(status)
            except psycopg2.Error as exc:
                last = str(exc).strip()
            time.sleep(0.2)
        raise ReplicaUnavailable(f"the replica did not start streaming: {last}")

    # --- use --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The replica as the app sees it: the test database, the app's role."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def query(self, sql: str, database: str = "postgres") -> tuple:
        """One row from the replica as the superuser (pausing replay needs one)."""
        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, connect_timeout=3
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchone()
        finally:
            conn.close()

    def pause_replay(self) -> None:
        self.query("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.query("SELECT pg_wal_replay_resume()")

    def wait_caught_up(self, timeout_s: float = 30) -> None:
        """Until the replica has replayed what the primary has written so far (its
        insert position: what the app records as a user's last write)."""
        with psycopg2.connect(self._primary_dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_insert_lsn()::text")
            target = cur.fetchone()[0]
        conn.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.query(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")[0]:
                return
            time.sleep(0.05)
        raise ReplicaUnavailable(f"the replica did not replay up to {target} in {timeout_s} s")

    def stop(self) -> None:
        self.ctl("stop", "-m", "fast", "-w")

    def restart(self) -> None:
        self.ctl("start", "-w", "-t", "60", "-l", str(self.root / "server.log"))
        self._wait_streaming()

    def destroy(self) -> None:
        if self.root is None:
            return
        with contextlib.suppress(ReplicaUnavailable):  # not running: nothing to stop
            self.ctl("stop", "-m", "immediate", "-w")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
