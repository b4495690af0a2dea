"""The production process layout on one box, for ``bench_scale``: what it starts and how it stops it.

Like ``deploy/`` (systemd units): a long-running code server (``dagster code-server start``, which launches every
run worker), ``dagster-daemon run`` and ``dagster-webserver``, both connected to the code server over gRPC, on the
repository's ``dagster.yaml`` (SQLite) with the embedded hot store (SQLite) and a local cold directory. ACE is the
simulator served over HTTP on loopback by a separate process (``bv-pipeline simulate-ace``), so its CPU is not the
stack's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml

from bv_pipeline.resources.hot_store import SqliteHotStoreResource
from bv_pipeline.storage.interfaces import HotStore
from bv_pipeline_tests.daemon import ROOT, pipeline_env, wait_for, write_instance_yaml

ROLES = ("code_server", "daemon", "webserver")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def site_names(count: int) -> tuple[str, ...]:
    return tuple(f"site{i:04d}" for i in range(1, count + 1))


def _spawn(args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A process in its own session, so stopping it takes its whole group (run workers included)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@contextmanager
def simulator_process(sites: tuple[str, ...], points: int, logs: Path) -> Iterator[tuple[str, int]]:
    """``bv-pipeline simulate-ace`` on a free loopback port; yields (ACE base URL, pid)."""
    port = free_port()
    args = [sys.executable, "-m", "bv_pipeline.simulator.server", "--port", str(port)]
    args += ["--sites", ",".join(sites), "--points", str(points)]
    proc = _spawn(args, os.environ, logs / "simulator.log")
    try:
        wait_for(lambda: _listening(port) or proc.poll() is not None, "the ACE simulator", timeout=120)
        if proc.poll() is not None:
            raise RuntimeError(f"the simulator exited: {(logs / 'simulator.log').read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}/api", proc.pid
    finally:
        _stop(proc)


@dataclass(frozen=True)
class StackPaths:
    home: Path  # DAGSTER_HOME: only Dagster's own storage (measured), no logs of ours
    data: Path  # BV_DATA_DIR: hot.sqlite3 and the cold directory
    logs: Path

    @classmethod
    def under(cls, tmp: Path) -> StackPaths:
        paths = cls(tmp / "dagster_home", tmp / "data", tmp / "logs")
        for path in (paths.data, paths.logs):
            path.mkdir(parents=True, exist_ok=True)
        write_instance_yaml(paths.home)
        return paths

    def hot_store(self) -> HotStore:
        return SqliteHotStoreResource(sqlite_path=str(self.data / "hot.sqlite3")).get_store()

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {log.name} ---\n{log.read_text(errors='replace')[-chars:]}"
            for log in sorted(self.logs.glob("*.log"))
        )


def preseed_sync_points(hot: HotStore, sites: tuple[str, ...], as_of_ms: int) -> None:
    """Record every site as synced up to ``as_of_ms`` today, as if the pipeline had been running all day.

    Without it, the first sync of each site fetches the whole day since midnight (a start-up cost, not the
    5-minute cycle's); with it, the warm-up round fetches the lookback plus the time since ``as_of_ms``.
    """
    today = dt.datetime.fromtimestamp(as_of_ms / 1000, tz=dt.UTC).date()
    for site in sites:
        hot.record_sync(site, today, as_of_ms, as_of_ms)


def sync_points(hot: HotStore, sites: tuple[str, ...]) -> dict[str, int | None]:
    """Each site's newest sync point (``as_of``) over yesterday and today."""
    today = dt.datetime.now(dt.UTC).date()
    result: dict[str, int | None] = {}
    for site in sites:
        state = hot.list_sync_as_of(site, today - dt.timedelta(days=1), today)
        result[site] = max(state.values()) if state else None
    return result


@contextmanager
def running_stack(paths: StackPaths, variables: Mapping[str, str]) -> Iterator[dict[str, int]]:
    """Code server, then daemon and webserver on it; yields role -> pid. Stops all three (and their children)."""
    port = free_port()
    workspace = paths.logs / "workspace.yaml"
    grpc = {"host": "127.0.0.1", "port": port, "location_name": "bv_pipeline"}
    workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": grpc}]}))
    env = pipeline_env(paths.home, BV_DATA_DIR=str(paths.data), **variables)
    py = sys.executable
    with ExitStack() as stack:
        code_location = ["-m", "bv_pipeline.definitions", "-a", "defs", "-d", str(ROOT)]
        code_server = _spawn(
            [py, "-m", "dagster", "code-server", "start", "-h", "127.0.0.1", "-p", str(port), *code_location],
            env,
            paths.logs / "code_server.log",
        )
        stack.callback(_stop, code_server)
        wait_for(lambda: _listening(port), "the code server", timeout=300, home=None)
        daemon = _spawn(
            [py, "-m", "dagster._daemon", "run", "-w", str(workspace)], env, paths.logs / "daemon.log"
        )
        stack.callback(_stop, daemon)
        web_port = free_port()
        webserver = _spawn(
            [py, "-m", "dagster_webserver", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(web_port)],
            env,
            paths.logs / "webserver.log",
        )
        stack.callback(_stop, webserver)
        yield {"code_server": code_server.pid, "daemon": daemon.pid, "webserver": webserver.pid}


def stop_sensor(instance: dg.DagsterInstance, name: str) -> bool:
    """Store the sensor as stopped (it is declared running in code); the daemon stops ticking it."""
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import InstigatorStatus

    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == name:
            instance.update_instigator_state(state.with_status(InstigatorStatus.STOPPED))
            return True
    return False


def runs_in_flight(instance: dg.DagsterInstance) -> tuple[int, int]:
    """(queued, launched but not finished) runs of any job."""
    queued = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
    running = instance.get_runs_count(
        dg.RunsFilter(
            statuses=[
                dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
            ]
        )
    )
    return queued, running


def dir_usage(path: Path) -> tuple[int, int]:
    """Bytes and files under ``path``."""
    size = files = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # a run's temporary file may vanish meanwhile
                size += os.path.getsize(os.path.join(dirpath, name))
                files += 1
    return size, files


def sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))
