"""The app as the Procfile starts it (gunicorn with config/gunicorn.conf.py): what
gunicorn answers and logs itself, before the app sees a request (issue 8 review)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT
from tests.conftest import USER_PASSWORD, add_user
from tests.servers import free_port

PRIVATE = "jim.doe@example.org"


@pytest.fixture(scope="module")
def served(app, database_url, redis_url, tmp_path_factory) -> Iterator[tuple[int, Path]]:
    """gunicorn started with the Procfile's web command (on the database `app` migrated);
    its port and its log file."""
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "output.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "gunicorn-test-secret-key-0123456789",
        "PLATFORM_API_KEY": "gunicorn-test-platform-key-0123456789",
        "LMS_ENV": "production",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "LMS_INSTANCE_PATH": str(log.parent),
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(gunicorn), "-c", "config/gunicorn.conf.py", "wsgi:app"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while b"200" not in raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[:20]:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield port, log
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def raw(port: int, request: bytes) -> bytes:
    """Send bytes as they are; the whole answer (the server closes or stops talking)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(request)
            chunks = []
            while True:
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    break
                if not data:
                    break
                chunks.append(data)
                if b"Connection: close" not in b"".join(chunks) and b"\r\n\r\n" in data:
                    break
            return b"".join(chunks)
    except OSError:
        return b""


def status_and_json(answer: bytes) -> tuple[int, dict, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), answer[:300]
    return int(head.split()[1]), json.loads(body), head


@pytest.mark.parametrize(
    ("request_line", "code"),
    [
        (f"GET  /api/v1/search?q={PRIVATE} HTTP/1.1", 400),  # malformed request line
        ("GET /api/v1/search?q=" + "x" * 5000 + f"{PRIVATE} HTTP/1.1", 414),
    ],
    ids=["bad-request-line", "request-line-too-long"],
)
def test_requests_gunicorn_refuses_get_json_and_leave_no_query_in_the_log(
    served, request_line, code
):
    port, log = served
    answer = raw(port, request_line.encode() + b"\r\nHost: x\r\n\r\n")
    status, body, _ = status_and_json(answer)
    assert status == code and body["code"] == code and body["status"]
    time.sleep(0.2)  # let the worker write its log line
    assert PRIVATE not in log.read_text()


def test_the_app_behind_gunicorn_answers_json_for_odd_paths_and_chunked_bodies(served):
    port, log = served
    status, body, head = status_and_json(
        raw(
            port,
            b"GET /api/v1//me HTTP/1.1\r\nHost: evil.example\r\nX-Tenant: nosuchschool\r\n\r\n",
        )
    )
    assert status == 404 and b"location" not in head.lower(), log.read_text()[-3000:]
    # A chunked body past MAX_CONTENT_LENGTH (2 MiB by default) is a 413, not a 400.
    payload = json.dumps({"email": PRIVATE, "password": "p" * 3_000_000}).encode()
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(payload[i : i + 65536]), payload[i : i + 65536])
        for i in range(0, len(payload), 65536)
    )
    request = (
        b"POST /platform/tenants HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer gunicorn-test-platform-key-0123456789\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    status, body, _ = status_and_json(raw(port, request))
    assert status == 413 and body["code"] == 413
    assert PRIVATE not in log.read_text()


def http(port: int, method: str, path: str, headers: dict[str, str], body=None) -> tuple[int, dict]:
    """One request through gunicorn; status and JSON body."""
    data = b"" if body is None else json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    status, answer, _ = status_and_json(raw(port, request))
    return status, answer


def test_every_line_the_deployment_writes_is_json_without_personal_data(served, app, make_tenant):
    """Logins (right and wrong), token use, bad input, a write and an error path, with
    an e-mail, a password and a token in play: none of them may reach the output,
    and every line (gunicorn's own, the app's, the access lines) parses as JSON."""
    port, log = served
    tenant = make_tenant()
    email = f"private.person.{os.getpid()}@example.org"
    add_user(app, tenant, "student", email=email)
    headers = {"X-Tenant": tenant.slug, "X-Request-ID": "trace-me-123"}
    status, _ = http(port, "POST", "/api/v1/auth/token", headers,
                     {"email": email, "password": "wrong-password-123"})  # fmt: skip
    assert status == 401
    status, body = http(port, "POST", "/api/v1/auth/token", headers,
                        {"email": email, "password": USER_PASSWORD})  # fmt: skip
    assert status == 200
    token = body["access_token"]
    signed_in = {**headers, "Authorization": f"Bearer {token}"}
    assert http(port, "GET", "/api/v1/me", signed_in)[0] == 200
    assert http(port, "GET", f"/api/v1/search?q={email}", signed_in)[0] == 200
    refused = [
        http(port, "PATCH", "/api/v1/users/999999", signed_in, {"email": email, "x": 1})[0],
        http(port, "POST", "/api/v1/courses", signed_in, {"title": 5})[0],
        http(port, "GET", "/api/v1/me", {**headers, "Authorization": f"Bearer {token[:-3]}"})[0],
    ]
    assert all(400 <= code < 500 for code in refused), refused
    time.sleep(0.3)  # let the workers write their lines
    output = log.read_text()
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) >= 8
    for line in lines:
        entry = json.loads(line)  # every line: gunicorn's, the app's, the access lines
        assert {"ts", "level", "logger"} <= entry.keys(), line
    for secret in (email, USER_PASSWORD, "wrong-password-123", token, token.split(".")[-1]):
        assert secret not in output
    traced = [json.loads(line) for line in lines if "trace-me-123" in line]
    assert traced and all(entry["request_id"] == "trace-me-123" for entry in traced)


def test_metrics_through_gunicorn_add_up_the_workers_files(served):
    """Multiprocess mode (the config sets PROMETHEUS_MULTIPROC_DIR before the app
    imports prometheus_client): the counts written by the worker are scraped."""
    port, _ = served
    for _ in range(3):
        assert b" 200 " in raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[:20]
    answer = raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b" 200 " in head[:20] and b"text/plain" in head
    text = body.decode()
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("lms_http_requests_total{")
        and 'route="/healthz"' in line
        and 'status="200"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 3
