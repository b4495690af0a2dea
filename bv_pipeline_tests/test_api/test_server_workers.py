"""``serve-api`` as a real server with two worker processes: answers, one ETag per query across processes, each
worker on its own SO_REUSEPORT socket (connections spread, a dead worker replaced), clean stop, a taken port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from bv_pipeline.api.workers import MAX_QUICK_FAILURES, STEADY_AFTER_S, Supervisor
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.test_api import _data as D

TOKEN = "workers-token-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.timeout(180)
def test_two_workers_serve_the_same_answers(tmp_path: Path) -> None:
    ds = D.build(tmp_path)
    port = _free_port()
    env = {
        **os.environ,
        "BV_DATA_DIR": str(ds.root),
        "BV_SITES": D.SITE,
        "BV_API_TOKENS": TOKEN,
        "BV_API_WORKERS": "2",
        "BV_API_RATE_PER_S": "1000",
        "BV_API_RATE_BURST": "1000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bv_pipeline.api.server", "--port", str(port), "--log-level", "warning"],
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "the server exited"
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become healthy"
            time.sleep(0.3)
        assert len(_children(proc.pid)) >= 2  # the worker processes (plus uvicorn's helpers)
        # The supervisor only reads settings and forks: the read engine's native libraries (tens of MiB) stay out.
        mapped = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "libarrow" not in mapped and "_polars_runtime" not in mapped
        assert any("libarrow" in Path(f"/proc/{c}/maps").read_text() for c in _children(proc.pid))

        lo, hi = day_bounds_ms(D.COLD_DELETED[0])[0], day_bounds_ms(D.HOT_ONLY[-1])[1]
        params = {
            "site_name": D.SITE,
            "point_names": f"{D.TEMP},{D.METER}",
            "start_time": lo,
            "end_time": hi - 1,
            "interval": "1h",
            "format": "columnar",
        }
        headers = {"Authorization": f"Bearer {TOKEN}"}
        etags, bodies = set(), set()
        for _ in range(12):  # a new connection each time: the kernel spreads them over the workers
            resp = httpx.get(f"{base}/timeseries/query", params=params, headers=headers, timeout=30)
            assert resp.status_code == 200
            etags.add(resp.headers["etag"])
            doc = resp.json()
            doc.pop("metadata")  # holds the query time
            bodies.add(str(doc))
        assert len(etags) == 1 and len(bodies) == 1
        again = httpx.get(
            f"{base}/timeseries/query", params=params, headers={**headers, "If-None-Match": etags.pop()}
        )
        assert again.status_code == 304
        # serve-api gave the workers one metrics directory: any worker's /metrics counts every worker's answers.
        for _ in range(4):
            text = httpx.get(f"{base}/metrics", timeout=10).text
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("bv_api_requests_total{") and 'route="/timeseries/query"' in line
            )
            assert counted == 13  # 12 answers and the 304
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0


def test_a_worker_on_the_embedded_stores_does_not_import_dagster(tmp_path: Path) -> None:
    """Dagster holds ~30 MiB per process; a worker serving SQLite + a local directory needs none of it."""
    env = {**os.environ, "BV_DATA_DIR": str(tmp_path), "BV_API_TOKENS": TOKEN}
    code = (
        "import sys; from bv_pipeline.api.server import create_app_from_env; app = create_app_from_env(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'dagster_aws', 'boto3')))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "hot.sqlite3").exists()  # the schema was created, as the resource would


def _owner_of(port: int, client_port: int, workers: list[int]) -> int | None:
    """The worker process holding the server end of the connection from ``client_port``."""
    for pid in workers:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.laddr.port == port and c.raddr and c.raddr.port == client_port for c in conns):
            return pid
    return None


def _listening(pid: int) -> list[int]:
    """Ports ``pid`` listens on (none for a process that has exited)."""
    try:
        conns = psutil.Process(pid).net_connections("tcp")
    except psutil.NoSuchProcess:
        return []
    return [c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN]


def _keep_alive_connection(port: int) -> socket.socket:
    """A connection that asked /health once (so a worker accepted it) and stays open."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
    head = conn.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return conn


def _wait_healthy(proc: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "the server exited"
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not become healthy"
        time.sleep(0.3)


@pytest.mark.timeout(180)
def test_each_worker_listens_itself_gets_connections_and_is_restarted(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "BV_DATA_DIR": str(tmp_path), "BV_API_TOKENS": TOKEN, "BV_API_WORKERS": "2"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "-m", "bv_pipeline.api.server", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    conns: list[socket.socket] = []
    try:
        _wait_healthy(proc, base)
        # Each worker owns a listening socket of its own on the port (once its app has started); the supervisor
        # listens on none.
        deadline = time.monotonic() + 120
        while [_listening(pid) for pid in _children(proc.pid)] != [[port], [port]]:
            assert time.monotonic() < deadline, "two workers did not listen"
            time.sleep(0.1)
        workers = _children(proc.pid)
        assert _listening(proc.pid) == []

        # 40 keep-alive clients: the kernel hashes each over the two sockets (both get none with p ~ 2e-12).
        owners: dict[int, int] = {}
        for _ in range(40):
            conn = _keep_alive_connection(port)
            conns.append(conn)
            owner = _owner_of(port, conn.getsockname()[1], workers)
            assert owner is not None
            owners[owner] = owners.get(owner, 0) + 1
        assert sorted(owners) == sorted(workers) and sum(owners.values()) == 40
        for conn in conns:
            conn.close()
        conns.clear()

        # A killed worker is replaced; the other keeps answering meanwhile and the new one takes connections.
        victim, survivor = workers
        os.kill(victim, signal.SIGKILL)
        # Connections the kernel had queued on the victim's socket die with it (SO_REUSEPORT's cost); once the
        # supervisor has reaped it, its socket is gone and every new connection must be answered.
        deadline = time.monotonic() + 60
        while victim in _children(proc.pid):
            assert time.monotonic() < deadline, "the supervisor did not reap the killed worker"
            time.sleep(0.05)
        deadline = time.monotonic() + 120
        while True:
            assert httpx.get(f"{base}/health", timeout=10).status_code == 200
            current = _children(proc.pid)
            if len(current) == 2 and victim not in current and all(_listening(p) == [port] for p in current):
                break  # a worker listens only once its app has started
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.2)
        (replacement,) = set(current) - {survivor}
        seen: set[int | None] = set()
        for _ in range(40):  # until the replacement has taken a connection
            conn = _keep_alive_connection(port)
            conns.append(conn)
            seen.add(_owner_of(port, conn.getsockname()[1], current))
            if replacement in seen:
                break
        assert replacement in seen
        for conn in conns:
            conn.close()
        conns.clear()
    finally:
        for conn in conns:
            conn.close()
        workers_now = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0
    assert not [pid for pid in workers_now if psutil.pid_exists(pid)]


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "BV_DATA_DIR": str(tmp_path), "BV_API_TOKENS": TOKEN, "BV_API_WORKERS": "2"}
        cmd = [sys.executable, "-m", "bv_pipeline.api.server", "--port", str(port)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in out.stderr


def test_a_worker_dying_at_start_up_is_restarted_with_back_off_then_given_up() -> None:
    sup = Supervisor("127.0.0.1", 0, 1, "warning")
    slot = sup.slots[0]
    delays = []
    for _ in range(MAX_QUICK_FAILURES):
        slot.proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
        slot.proc.wait()
        slot.started = 1000.0
        assert sup._reap(slot, now=1001.0) is None
        assert slot.proc is None and slot.restart_at is not None
        delays.append(slot.restart_at - 1001.0)
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    slot.proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    slot.proc.wait()
    assert "died 10 times in a row" in (sup._reap(slot, now=1001.0) or "")
    # A worker that had been serving for a while is restarted at once, and its count starts over.
    slot.proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    slot.proc.wait()
    slot.started, slot.quick_failures = 0.0, 5
    assert sup._reap(slot, now=STEADY_AFTER_S) is None
    assert slot.restart_at == STEADY_AFTER_S and slot.quick_failures == 1
