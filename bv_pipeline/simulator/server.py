"""Serve an ``AceSimulator`` over real HTTP (stdlib ``ThreadingHTTPServer``), in-process or from the CLI.

``bv-pipeline simulate-ace`` calls ``main``; with default arguments it serves exactly what the embedded
default ``AceSimulator()`` serves (sites ("demo",), 300 points, seed 42, 60 s cadence).
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from bv_pipeline.config import ConfigError, validate_site_name

from .app import AceSimulator, SimulatorConfig
from .faults import FaultConfig


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive between pages; every response carries Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this Nagle + delayed ACK adds ~40 ms per response.
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = httpx.Request(
            self.command,
            f"http://{self.headers.get('Host') or 'localhost'}{self.path}",
            headers=list(self.headers.items()),
            content=body,
        )
        response = self.server.simulator.handle(request)
        content = response.content
        self.send_response(response.status_code)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: object) -> None:
        if self.server.log_requests:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: AceSimulator, log_requests: bool = False) -> None:
        super().__init__(address, _Handler)
        self.simulator = simulator
        self.log_requests = log_requests

    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/api"


@contextmanager
def run_server(simulator: AceSimulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``simulator`` on a daemon thread; yields the base URL ``http://HOST:PORT/api``."""
    server = _Server((host, port), simulator)
    thread = threading.Thread(target=server.serve_forever, name="ace-simulator", daemon=True)
    thread.start()
    try:
        yield server.base_url()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def build_parser() -> argparse.ArgumentParser:
    d = SimulatorConfig()
    f = FaultConfig()
    p = argparse.ArgumentParser(
        prog="bv-pipeline simulate-ace", description="Serve the ACE FlightDeck simulator"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700, help="0 picks a free port")
    p.add_argument("--sites", default=",".join(d.sites), help="comma-separated site names")
    p.add_argument("--points", type=int, default=d.points, help="points per site")
    p.add_argument("--cadence", type=int, default=d.cadence_s, help="seconds between samples of a point")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--api-key", default=None, help="required bearer key (default: accept any non-empty key)")
    p.add_argument("--missing-fraction", type=float, default=d.missing_fraction)
    p.add_argument("--fault-429", type=float, default=f.rate_429, help="share of requests answered 429")
    p.add_argument("--retry-after", type=float, default=f.retry_after_s, help="Retry-After seconds on 429")
    p.add_argument(
        "--fault-5xx", type=float, default=f.rate_5xx, help="share of requests answered 500/502/503"
    )
    p.add_argument("--fault-slow", type=float, default=f.rate_slow, help="share of requests delayed")
    p.add_argument("--slow-seconds", type=float, default=f.slow_s)
    p.add_argument(
        "--fault-truncated", type=float, default=f.rate_truncated, help="share of bodies cut short"
    )
    p.add_argument("--fault-malformed", type=float, default=f.rate_malformed, help="share of bodies broken")
    p.add_argument("--cursor-stall", action="store_true", help="reproduce the real next_cursor bug")
    p.add_argument(
        "--late-fraction", type=float, default=f.late_fraction, help="share of samples arriving late"
    )
    p.add_argument("--late-max-minutes", type=int, default=f.late_max_minutes)
    p.add_argument("--fault-seed", type=int, default=f.seed)
    p.add_argument("--log-requests", action="store_true", help="log one line per request to stderr")
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    sites = tuple(s.strip() for s in args.sites.split(",") if s.strip())
    for site in sites:
        validate_site_name(site, variable="--sites")
    faults = FaultConfig(
        rate_429=args.fault_429,
        retry_after_s=args.retry_after,
        rate_5xx=args.fault_5xx,
        rate_slow=args.fault_slow,
        slow_s=args.slow_seconds,
        rate_truncated=args.fault_truncated,
        rate_malformed=args.fault_malformed,
        cursor_stall=args.cursor_stall,
        late_fraction=args.late_fraction,
        late_max_minutes=args.late_max_minutes,
        seed=args.fault_seed,
    )
    return SimulatorConfig(
        sites=sites,
        points=args.points,
        cadence_s=args.cadence,
        seed=args.seed,
        api_key=args.api_key,
        missing_fraction=args.missing_fraction,
        faults=faults,
    )


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (ConfigError, ValueError) as e:
        parser.error(str(e))
    server = _Server((args.host, args.port), AceSimulator(config), log_requests=args.log_requests)
    print(f"ACE simulator listening on {server.base_url()}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
