"""The real Dagster daemon as a subprocess, for end-to-end tests of what only the daemon does.

``dagster-daemon run`` loads ``workspace.yaml`` exactly as in production: it starts a gRPC code server for
``bv_pipeline.definitions``, runs the sensor, the run queue, run monitoring, run retries and backfills, and the
default run launcher starts every run worker from that code server. Tests configure it through the environment and
an instance file built from the repository's ``dagster.yaml`` (with shorter intervals where a test must not wait
minutes), and read the same instance from the test process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import yaml
from dagster._core.events import DagsterEventType
from dagster._core.instance.ref import InstanceRef

from bv_pipeline.assets.hot_events import HOT_TIMESERIES
from bv_pipeline.partitions import SiteDay, parse_site_day
from bv_pipeline.simulator import AceSimulator
from bv_pipeline.simulator.server import _Handler
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.stack import assert_same_samples

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def write_instance_yaml(
    home: Path, overrides: Mapping[str, Any] | None = None, *, source: Path = ROOT / "dagster.yaml"
) -> dict[str, Any]:
    """``source`` (default: the repository's dagster.yaml) with top-level sections merged one level deep."""
    config = yaml.safe_load(source.read_text())
    for section, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **value}
        else:
            config[section] = value
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def open_instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def pipeline_env(home: Path, **variables: str) -> dict[str, str]:
    """The daemon's environment: embedded defaults except what the test sets, this checkout first on the path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACE_", "CLOUDFLARE_", "D1_", "R2_", "BV_", "DAGSTER_"))
    }
    env.update(DAGSTER_HOME=str(home), PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(variables)
    return env


@contextmanager
def running_daemon(home: Path, env: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``dagster-daemon run`` in its own process group (its code server and run workers are in it too)."""
    log = (home / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster._daemon", "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        _stop_group(proc)
        log.close()


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group: code server, run workers
    proc.wait(timeout=10)


def wait_for(
    check: Callable[[], T | None], what: str, *, timeout: float = 240, home: Path | None = None
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (with the daemon log's tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    tail = (home / "daemon.log").read_text(errors="replace")[-4000:] if home else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n--- daemon log ---\n{tail}")


def synced_site_days(instance: dg.DagsterInstance, runs: Iterable[dg.DagsterRun]) -> set[SiteDay]:
    """The ``hot_timeseries`` partitions the runs materialised (a live-sync run: one per synced site-day)."""
    out = set()
    for run in runs:
        for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            mat = entry.asset_materialization
            if mat is not None and mat.asset_key == HOT_TIMESERIES and mat.partition:
                out.add(parse_site_day(mat.partition))
    return out


def assert_synced_exactly(data_dir: Path, simulator: AceSimulator, site_days: Iterable[SiteDay]) -> None:
    """Each site-day holds exactly the source's samples up to the day's recorded sync point."""
    from bv_pipeline.resources.hot_store import SqliteHotStoreResource

    hot = SqliteHotStoreResource(sqlite_path=str(data_dir / "hot.sqlite3")).get_store()
    for sd in site_days:
        as_of = hot.get_sync_as_of(sd.site, sd.day)
        assert as_of is not None, f"no sync recorded for {sd}"
        start, _ = day_bounds_ms(sd.day)
        stored = hot.read_samples(sd.site, None, start, as_of)
        assert stored.num_rows > 0
        assert_same_samples(stored, simulator.truth(sd.site, start, as_of))


class _GatedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, simulator: AceSimulator, gate: Gate) -> None:
        super().__init__(("127.0.0.1", 0), _GatedHandler)
        self.simulator = simulator
        self.log_requests = False
        self.gate = gate


class _GatedHandler(_Handler):
    server: _GatedServer  # type: ignore[assignment]

    def _serve(self) -> None:
        self.server.gate.pass_through(self.path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client was killed meanwhile
            super()._serve()

    do_GET = do_POST = _serve


class Gate:
    """While closed, every ACE request (of ``only`` these sites, if given) waits and is counted by site: a run
    stuck mid-step, like a slow API."""

    def __init__(self, only: Iterable[str] | None = None) -> None:
        self._open = threading.Event()
        self._lock = threading.Lock()
        self.only = set(only) if only is not None else None
        self.waiting: dict[str, int] = {}

    def pass_through(self, path: str) -> None:
        if self._open.is_set():
            return
        site = path.split("/sites/", 1)[1].split("/", 1)[0] if "/sites/" in path else ""
        if self.only is not None and site not in self.only:
            return
        with self._lock:
            self.waiting[site] = self.waiting.get(site, 0) + 1
        self._open.wait(timeout=600)

    def open(self) -> None:
        self._open.set()


@contextmanager
def gated_ace_server(simulator: AceSimulator, gate: Gate) -> Iterator[str]:
    """The simulator over real HTTP behind ``gate``; yields the ACE base URL."""
    server = _GatedServer(simulator, gate)
    thread = threading.Thread(target=server.serve_forever, name="gated-ace", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}/api"
    finally:
        gate.open()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
