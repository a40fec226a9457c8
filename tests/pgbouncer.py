"""A real PgBouncer in transaction mode in front of the test server, for tests.

Debian's `pgbouncer`, started on a spare port with a configuration of its own in a
temporary directory (as the `postgres` OS user when run as root: it refuses root),
and stopped at the end. Missing, it raises with what to install; it never skips.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.servers import free_port


class PgBouncerUnavailable(RuntimeError):
    pass


class PgBouncer:
    def __init__(self, server_url: str, pool_size: int) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise PgBouncerUnavailable(
                "pgbouncer not found: install it (Debian: apt-get install pgbouncer;"
                " .ci/run does this)"
            )
        self.binary = binary
        self.server = make_url(server_url)
        self.pool_size = pool_size
        self.port = free_port()
        self.root: Path | None = None
        self.proc: subprocess.Popen | None = None

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{self.server.username}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PgBouncer:
        self.root = Path(tempfile.mkdtemp(prefix="lms-pgbouncer-"))
        users = {self.server.username or "postgres", "postgres"}
        (self.root / "userlist.txt").write_text("".join(f'"{u}" ""\n' for u in sorted(users)))
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.server.host or '127.0.0.1'} port={self.server.port or 5432}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root}/userlist.txt\n"
            f"pool_mode = transaction\ndefault_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            # libpq `options` (statement_timeout, timezone) cannot pass a pooler.
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.root}/pgbouncer.log\n"
        )
        argv = [self.binary, str(self.root / "pgbouncer.ini")]
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            argv[1:1] = ["-u", "postgres"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                output = (
                    self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                )
                raise PgBouncerUnavailable(f"pgbouncer exited: {output[-800:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise PgBouncerUnavailable("pgbouncer did not listen within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
