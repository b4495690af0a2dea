"""Several read-API worker processes, each with its own ``SO_REUSEPORT`` listening socket on the same address.

uvicorn's own supervisor shares one listening socket among its workers: whichever worker wakes first accepts a
burst of pending connections, and a keep-alive client stays with that worker, so 50 clients split anywhere from
25/25 to 44/6 and one core queued most of the work. Here each worker binds its own socket with ``SO_REUSEPORT``
and Linux spreads new connections over the workers' sockets by a hash of the connection's addresses.
(No maintained option fit: uvicorn (0.54) has no per-worker ``reuse_port``; gunicorn's ``reuse_port`` binds in
each worker only since late 2024 and would bring gunicorn, a uvicorn worker class and a forking master.)

The supervisor (this module's ``run_workers``) imports neither uvicorn nor the read engine. It checks that the
address is free, keeps a bound but never listening ``SO_REUSEPORT`` socket on it so no other program takes the
port while a worker restarts (a socket that does not listen gets no connections), starts the workers as
``python -m bv_pipeline.api.workers``, restarts a worker that dies (backing off when one keeps dying at
start-up), and on SIGINT/SIGTERM sends SIGTERM to every worker and waits for them to finish their requests.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

LISTEN_BACKLOG = 2048  # pending connections per worker socket (uvicorn's default)
STOP_GRACE_S = 30.0  # a stopping worker gets this long to finish its requests before SIGKILL
STEADY_AFTER_S = 30.0  # a worker that ran this long before dying is restarted at once
MAX_BACKOFF_S = 30.0
MAX_QUICK_FAILURES = 10  # consecutive deaths within STEADY_AFTER_S of start: give up (~2.5 min of back-off)
_PR_SET_PDEATHSIG = 1


def _log(message: str) -> None:
    print(f"serve-api: {message}", file=sys.stderr, flush=True)


def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with ``SO_REUSEPORT`` (and ``SO_REUSEADDR`` for TIME_WAIT leftovers), not
    listening: the kernel gives connections only to listening sockets of the group."""
    family, sockaddr = _address(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def _claim_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Fail if anything listens on host:port, then hold it with a bound, non-listening reuse-port socket.

    The probe binds without ``SO_REUSEPORT``, which fails when any socket (another server, or an old instance
    of this one) listens there; binding with it straight away would join that server's group silently."""
    family, sockaddr = _address(host, port)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(sockaddr)
        port = int(probe.getsockname()[1])  # resolves port 0
    return reuse_port_socket(host, port), port


@dataclass
class _Slot:
    """One worker position: its current process and how often it died soon after starting."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = field(default=None)


class Supervisor:
    def __init__(self, host: str, port: int, workers: int, log_level: str) -> None:
        self.host, self.port, self.workers, self.log_level = host, port, workers, log_level
        self.slots = [_Slot(i) for i in range(workers)]
        self.stop_signals = 0

    def _start(self, slot: _Slot) -> None:
        cmd = [sys.executable, "-m", "bv_pipeline.api.workers", "--host", self.host, "--port", str(self.port)]
        cmd += ["--log-level", self.log_level, "--parent", str(os.getpid())]
        slot.proc = subprocess.Popen(cmd)
        slot.started, slot.restart_at = time.monotonic(), None

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_signals += 1
        if self.stop_signals > 1:  # asked twice: stop waiting for requests to finish
            self._signal_all(signal.SIGKILL)

    def _signal_all(self, sig: signal.Signals) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(sig)

    def _reap(self, slot: _Slot, now: float) -> str | None:
        """Handle a dead worker: schedule its restart, or return why the server must give up."""
        assert slot.proc is not None
        pid, code = slot.proc.pid, slot.proc.returncode
        _mark_process_dead(pid)
        slot.proc = None
        if now - slot.started >= STEADY_AFTER_S:
            slot.quick_failures = 0
        slot.quick_failures += 1
        if slot.quick_failures > MAX_QUICK_FAILURES:
            return f"worker {slot.index} died {MAX_QUICK_FAILURES} times in a row soon after starting"
        delay = 0.0 if slot.quick_failures == 1 else min(0.5 * 2 ** (slot.quick_failures - 2), MAX_BACKOFF_S)
        _log(f"worker {slot.index} (pid {pid}) exited with code {code}; restarting it in {delay:.1f} s")
        slot.restart_at = now + delay
        return None

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        for slot in self.slots:
            self._start(slot)
        _log(
            f"starting {self.workers} workers on {self.host}:{self.port}, one SO_REUSEPORT socket each, pids "
            + " ".join(str(s.proc.pid) for s in self.slots if s.proc)
        )
        failure: str | None = None
        while not self.stop_signals and failure is None:
            now = time.monotonic()
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is not None:
                    failure = failure or self._reap(slot, now)
                elif slot.proc is None and slot.restart_at is not None and now >= slot.restart_at:
                    self._start(slot)
            time.sleep(0.2)
        self._stop()
        if failure is not None:
            _log(f"{failure}; stopping")
            return 1
        return 0

    def _stop(self) -> None:
        # SIGTERM, not SIGINT: a terminal's Ctrl-C already sent the workers SIGINT, and uvicorn treats a second
        # SIGINT as "exit now" but a SIGTERM after it as the same graceful stop.
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log(
                    f"worker {slot.index} (pid {slot.proc.pid}) did not stop in {STOP_GRACE_S:.0f} s; killing it"
                )
                slot.proc.kill()
                slot.proc.wait()
            _mark_process_dead(slot.proc.pid)


def _mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live-gauge files from the Prometheus multiprocess directory (its counters stay:
    they are part of the server's totals). A no-op while the API defines no live gauges."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)


def run_workers(host: str, port: int, workers: int, log_level: str) -> int:
    """Serve with ``workers`` processes on host:port until SIGINT/SIGTERM; 1 if the port cannot be bound."""
    try:
        reservation, port = _claim_port(host, port)
    except OSError as exc:
        _log(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        return 1
    with reservation:
        return Supervisor(host, port, workers, log_level).run()


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGTERM when the supervisor dies (even by SIGKILL), so no worker is left serving alone."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "prctl"):
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        raise SystemExit(0)


def worker_main(argv: Sequence[str] | None = None) -> int:
    """One worker: its own reuse-port socket, the app from ``create_app_from_env``, uvicorn serving both."""
    parser = argparse.ArgumentParser(prog="bv_pipeline.api.workers")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    try:
        sock = reuse_port_socket(args.host, args.port)
    except OSError as exc:
        _log(f"worker pid {os.getpid()} cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return 3
    import uvicorn

    config = uvicorn.Config(
        "bv_pipeline.api.server:create_app_from_env",
        factory=True,
        log_level=args.log_level,
        access_log=False,
        backlog=LISTEN_BACKLOG,
    )
    # uvicorn listens on the socket (asyncio's create_server) only after the app is built and its start-up hooks
    # ran, so a starting or restarting worker gets no connections before it can answer them.
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(worker_main())
