"""What a hostile client meets at `kqueue api` (a subprocess, real broker): Host names it was not
meant for (DNS rebinding), requests without the token (refused before the body is read), browser
headers on every answer, the docs page only when asked (and then from local files), slow or
half-open connections closed, and a listener beyond loopback refused without a token."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.support.api import ROOT, ApiProcess
from tests.support.kafka import unique
from tests.support.worker import wait_for

TOKEN = "guard-token"
ADD = json.dumps({"type": "add", "payload": {"a": 1, "b": 2}}).encode()


class Raw:
    """Requests with exactly the headers given (urllib would set Host itself)."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes | None = None,
             timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            if body is not None and "Content-Length" not in headers:
                conn.putheader("Content-Length", str(len(body)))
            # The server may answer before reading the whole body, then close (a 401 before a 2 MB
            # body is the point of some tests): its answer arrived before the close, so read it.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.endheaders(body)
            answer = conn.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def open_api(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiProcess, str]]:
    """No token (the default, and `kqueue demo`), on loopback, with one extra allowed name."""
    queue = unique("guard")
    with ApiProcess(bootstrap, queue, tmp_path_factory.mktemp("open") / "view.db",
                    extra=("--allowed-host", "kq.example")) as api:
        yield api, queue


@pytest.fixture(scope="module")
def guarded(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    with ApiProcess(bootstrap, unique("guarded"), tmp_path_factory.mktemp("guarded") / "view.db", token=TOKEN,
                    extra=("--docs", "--header-timeout", "1", "--limit-concurrency", "8")) as api:
        yield api


def test_a_rebinding_page_cannot_reach_the_api(open_api: tuple[ApiProcess, str]) -> None:
    api, queue = open_api
    raw = Raw(api.url)
    port = raw.port
    json_type = {"Content-Type": "application/json"}
    for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.nip.io", "localhost.attacker.example"):
        code, _, body = raw.send("POST", "/api/v1/tasks", {"Host": host, **json_type}, ADD)
        assert code == 400, (host, code, body)
        assert raw.send("GET", "/", {"Host": host})[0] == 400
    assert raw.send("POST", "/api/v1/tasks", json_type, ADD)[0] == 400  # no Host at all
    accepted = []
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "kq.example", f"KQ.example:{port}"):
        code, _, body = raw.send("POST", "/api/v1/tasks", {"Host": host, **json_type}, ADD)
        assert code == 202, (host, code, body)
        accepted.append(json.loads(body)["task_id"])
    # Probes carry the pod's address as their Host: they always pass.
    assert raw.send("GET", "/livez", {"Host": "10.1.2.3:8080"})[0] == 200
    # Only the accepted enqueues reached Kafka.
    code, listed = api.request("GET", f"/api/v1/tasks?queue={queue}&limit=100")
    assert code == 200 and sorted(t["task_id"] for t in listed) == sorted(accepted), listed


def test_the_token_is_checked_before_the_body_is_read(guarded: ApiProcess) -> None:
    raw = Raw(guarded.url)
    host = {"Host": f"127.0.0.1:{raw.port}", "Content-Type": "application/json"}
    deep = b'{"type": "add", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    for headers, body in (({}, b"{not json"), ({}, deep), ({"Authorization": "Bearer wrong"}, b"{not json"),
                          ({"Authorization": f"Basic {TOKEN}"}, ADD), ({}, b"x" * 2_000_000)):
        code, answer_headers, answer = raw.send("POST", "/api/v1/tasks", {**host, **headers}, body)
        assert (code, json.loads(answer)) == (401, {"detail": "missing or wrong bearer token"}), (headers, answer)
        assert answer_headers["www-authenticate"] == "Bearer"
    assert raw.send("GET", "/api/v1/no-such-route", host)[0] == 401  # learns nothing of the routes either
    # A body announced but never sent: the 401 comes at once, without waiting for it.
    with socket.create_connection((raw.host, raw.port), timeout=10) as sock:
        sock.sendall(f"POST /api/v1/tasks HTTP/1.1\r\nHost: {host['Host']}\r\nContent-Length: 900000\r\n"
                     "Content-Type: application/json\r\n\r\n".encode())
        started = time.monotonic()
        assert sock.recv(1024).startswith(b"HTTP/1.1 401 ")
        assert time.monotonic() - started < 2
    code, _, answer = raw.send("POST", "/api/v1/tasks", {**host, "Authorization": f"bearer {TOKEN}"}, ADD)
    assert code == 202, answer


def test_every_answer_carries_the_browser_headers(open_api: tuple[ApiProcess, str], guarded: ApiProcess) -> None:
    api, _ = open_api
    raw = Raw(api.url)
    local = {"Host": f"localhost:{raw.port}"}
    answers = [raw.send("GET", "/", local), raw.send("GET", "/static/dashboard.js", local),
               raw.send("GET", "/api/v1/tasks", local), raw.send("GET", "/api/v1/tasks/nope-" + "x" * 600, local),
               raw.send("GET", "/", {"Host": "attacker.example"}), raw.send("GET", "/livez", local),
               raw.send("POST", "/api/v1/tasks", {**local, "Content-Type": "application/json"}, b"x" * 2_000_000),
               raw.send("GET", "/openapi.json", local)]
    guarded_raw = Raw(guarded.url)
    answers.append(guarded_raw.send("GET", "/api/v1/tasks", {"Host": f"localhost:{guarded_raw.port}"}))
    assert sorted({a[0] for a in answers}) == [200, 400, 401, 413, 422]
    for code, headers, _ in answers:
        policy = headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy, (code, headers)
        assert headers.get("x-content-type-options") == "nosniff", (code, headers)
        assert headers.get("x-frame-options") == "DENY", (code, headers)
    page = answers[0][2].decode()
    assert "http://" not in page and "https://" not in page  # the dashboard loads nothing from elsewhere
    # No docs unless asked for (they would load a CDN's scripts).
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert raw.send("GET", path, local)[0] == 404, path


def test_docs_when_asked_are_served_from_local_files(guarded: ApiProcess) -> None:
    raw = Raw(guarded.url)
    local = {"Host": f"localhost:{raw.port}"}
    code, headers, page = raw.send("GET", "/docs", local)
    assert code == 200 and "frame-ancestors 'none'" in headers["content-security-policy"]
    text = page.decode()
    assert "http://" not in text and "https://" not in text and "<script>" not in text, text
    for path in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/static/docs.js"):
        code, headers, body = raw.send("GET", path, local)
        assert code == 200 and len(body) > 100, path
        assert path.endswith(".css") or "javascript" in headers["content-type"], (path, headers)


def test_slow_and_half_open_clients_are_cut_off(guarded: ApiProcess) -> None:
    """--header-timeout 1, --limit-concurrency 8: 12 connections that never finish their headers
    (one trickling a byte every 0.3 s, which a keep-alive timer would forgive) fill the limit, so a
    real request meanwhile is answered 503; within seconds they are closed, and requests pass again."""
    raw = Raw(guarded.url)
    local = {"Host": f"localhost:{raw.port}", "Authorization": f"Bearer {TOKEN}"}
    half_open = [socket.create_connection((raw.host, raw.port), timeout=10) for _ in range(12)]
    try:
        for sock in half_open:
            sock.sendall(b"GET /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\n")
        busy = raw.send("GET", "/api/v1/workers", local)
        assert busy[0] == 503, busy
        trickler = half_open[0]
        closed_at: dict[int, float] = {}
        started = time.monotonic()

        def all_closed() -> bool:
            with contextlib.suppress(OSError):
                trickler.sendall(b"X")  # keeps sending, never finishes the headers
            time.sleep(0.3)
            for i, sock in enumerate(half_open):
                if i not in closed_at and _closed(sock):
                    closed_at[i] = time.monotonic() - started
            return len(closed_at) == len(half_open)

        wait_for(all_closed, 15, "the server to close every half-open connection")
        assert max(closed_at.values()) < 5, closed_at
    finally:
        for sock in half_open:
            sock.close()
    assert raw.send("GET", "/api/v1/workers", local)[0] == 200
    # A request whose headers come in pieces, but in time, is served.
    with socket.create_connection((raw.host, raw.port), timeout=10) as sock:
        request = b"GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        for i in range(0, len(request), 10):
            sock.sendall(request[i:i + 10])
            time.sleep(0.05)
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 ")


def _closed(sock: socket.socket) -> bool:
    """The server closed it (an answer, maybe a 408, then end of stream)."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def _api(bootstrap: str, db: Path, *args: str, token: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "KQUEUE_BOOTSTRAP_SERVERS": bootstrap, "KQ_TEST_QUEUE": unique("wide")}
    env.pop("KQUEUE_API_TOKEN", None)
    if token is not None:
        env["KQUEUE_API_TOKEN"] = token
    return subprocess.Popen([sys.executable, "-m", "kqueue", "api", "--app", "tests.apps.lifecycle:app", "--port", "0",
                             "--db", str(db), *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_beyond_loopback_a_token_is_needed_or_explicitly_waived(bootstrap: str, tmp_path: Path) -> None:
    refused = _api(bootstrap, tmp_path / "a.db", "--host", "0.0.0.0")
    out, err = refused.communicate(timeout=60)
    assert refused.returncode == 2, (out, err)
    assert err.count("\n") == 1 and "without a token" in err and "--allow-no-token" in err, err

    for args, token in ((("--host", "0.0.0.0", "--allow-no-token"), None), (("--host", "0.0.0.0"), TOKEN)):
        started = _api(bootstrap, tmp_path / "b.db", *args, token=token)
        try:
            assert started.stdout is not None
            line = started.stdout.readline()
            assert "kqueue api on http://0.0.0.0:" in line, (line, started.stderr.read() if started.stderr else "")
            port = int(line.split("http://0.0.0.0:")[1].split()[0])
            raw = Raw(f"http://127.0.0.1:{port}")
            headers: dict[str, Any] = {"Host": "kqueue-api.jobs.svc.cluster.local"}  # any name: the token guards
            if token:
                headers["Authorization"] = f"Bearer {token}"
            wait_for(lambda r=raw, h=headers: r.send("GET", "/readyz", h)[0] == 200, 60,  # type: ignore[misc]
                     "the API to be ready")
            assert raw.send("GET", "/api/v1/workers", headers)[0] == 200
        finally:
            started.terminate()
            _, err = started.communicate(timeout=30)
        assert ("warning" in err and "no token" in err) == (token is None), err


@pytest.mark.parametrize("args", [("--allowed-host", "http://kq.example"), ("--allowed-host", "kq.*.example"),
                                  ("--header-timeout", "0"), ("--limit-concurrency", "0")])
def test_bad_guard_flags_are_one_line_errors(bootstrap: str, tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = _api(bootstrap, tmp_path / "c.db", *args)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert args[0] in err, err
