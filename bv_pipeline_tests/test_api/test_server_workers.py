"""``serve-api`` as a real server with two uvicorn workers: answers, one ETag per query across processes, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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
