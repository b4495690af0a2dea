"""A whole pipeline on local peers for Dagster-level tests.

The ACE simulator (in-process httpx transport), the real AceClient, SQLite hot store, local cold directory, and
a pinned clock shared by the simulator and the pipeline so "now" is the same instant for both.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa

from bv_pipeline.config import Settings
from bv_pipeline.definitions import build_definitions
from bv_pipeline.partitions import site_day_key
from bv_pipeline.resources.ace import AceClient
from bv_pipeline.resources.ace_resource import AceResource
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import D1HotStoreResource, HotStoreResource, SqliteHotStoreResource
from bv_pipeline.resources.policy import PolicyResource
from bv_pipeline.simulator import AceSimulator, FaultConfig, SimulatorConfig
from bv_pipeline.storage.interfaces import HotStore, ObjectStore
from bv_pipeline.storage.samples import sort_samples
from bv_pipeline_tests.fakes.d1_server import run_fake_d1
from bv_pipeline_tests.fixtures.s3 import S3Bucket

# Simulators by id: Dagster re-creates resources from their config, so a test resource can carry only plain
# fields; it finds its (stateful, clock-sharing) simulator here.
_SIMULATORS: dict[str, AceSimulator] = {}
_ids = itertools.count()


class SimulatedAceResource(AceResource):
    """The real AceClient over the in-process transport of a registered simulator; retries do not sleep."""

    simulator_id: str = ""

    def get_client(self, lane: str = "batch") -> AceClient:
        sim = _SIMULATORS[self.simulator_id]
        return AceClient(
            "http://ace-simulator/api",
            "test-key",
            transport=sim.transport(),
            sleep=lambda _s: None,
            requests_per_minute=100_000,
            max_attempts=self.max_attempts,
            limiter=self.shared_limiter(lane),  # None unless a test names a shared rate-limit store
        )


@dataclass
class Stack:
    tmp: Path
    sites: tuple[str, ...] = ("demo",)
    points: int = 40
    now_ms: int = 0
    faults: FaultConfig = field(default_factory=FaultConfig)
    hot_storage_days: int = 20
    max_attempts: int = 8
    hot_resource: HotStoreResource | None = None  # default: SQLite under tmp
    cold_resource: ColdStoreResource | None = None  # default: a local directory under tmp

    def __post_init__(self) -> None:
        self.sim = AceSimulator(
            SimulatorConfig(sites=self.sites, points=self.points, seed=7, faults=self.faults),
            clock=lambda: self.now_ms / 1000,
        )
        self.sim_id = f"sim-{next(_ids)}"
        _SIMULATORS[self.sim_id] = self.sim
        if self.hot_resource is None:
            self.hot_resource = SqliteHotStoreResource(sqlite_path=str(self.tmp / "hot.sqlite3"))
        if self.cold_resource is None:
            self.cold_resource = ColdStoreResource(local_dir=str(self.tmp / "cold"))
        self.settings = Settings(sites=self.sites, data_dir=self.tmp, hot_storage_days=self.hot_storage_days)

    def serve_only(self, sites: tuple[str, ...]) -> None:
        """From now on ACE serves only ``sites`` (same data): as if the account lost access to the others."""
        self.sim = AceSimulator(
            SimulatorConfig(sites=sites, points=self.points, seed=7, faults=self.faults),
            clock=lambda: self.now_ms / 1000,
        )
        _SIMULATORS[self.sim_id] = self.sim

    # -- clock -------------------------------------------------------------------------------------------------
    def set_now(self, when: dt.datetime) -> None:
        self.now_ms = int(when.timestamp() * 1000)

    def advance(self, **delta: float) -> None:
        self.now_ms += int(dt.timedelta(**delta).total_seconds() * 1000)

    # -- Dagster -----------------------------------------------------------------------------------------------
    def resources(self) -> dict[str, Any]:
        return {
            "ace": SimulatedAceResource(simulator_id=self.sim_id, max_attempts=self.max_attempts),
            "hot_store": self.hot_resource,
            "cold_store": self.cold_resource,
            "clock": ClockResource(fixed_now_ms=self.now_ms),
            "policy": PolicyResource(
                hot_storage_days=self.hot_storage_days, max_catchup_days=self.hot_storage_days
            ),
        }

    def defs(self) -> dg.Definitions:
        return build_definitions(self.settings, resources=self.resources())

    def run(
        self,
        job: str,
        site: str,
        day: dt.date,
        instance: dg.DagsterInstance,
        *,
        mode: str | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        if site not in instance.get_dynamic_partitions("sites"):
            instance.add_dynamic_partitions("sites", [site])
        run_config = {"ops": {"hot_timeseries": {"config": {"mode": mode}}}} if mode else None
        return (
            self.defs()
            .resolve_job_def(job)
            .execute_in_process(
                partition_key=site_day_key(site, day),
                instance=instance,
                run_config=run_config,
                raise_on_error=raise_on_error,
            )
        )

    # -- stores and truth --------------------------------------------------------------------------------------
    @property
    def hot(self) -> HotStore:
        assert self.hot_resource is not None
        return self.hot_resource.get_store()

    @property
    def cold(self) -> ObjectStore:
        assert self.cold_resource is not None
        return self.cold_resource.get_store()

    def truth(self, site: str, start_ms: int, end_ms: int, *, as_of_ms: int | None = None) -> pa.Table:
        return sort_samples(self.sim.truth(site, start_ms, end_ms, as_of_ms=as_of_ms))

    def hot_rows(self, site: str, start_ms: int, end_ms: int) -> pa.Table:
        return sort_samples(self.hot.read_samples(site, None, start_ms, end_ms))


def assert_same_samples(actual: pa.Table, expected: pa.Table) -> None:
    """Sample-by-sample equality (NaN-aware through Arrow's equals on identical layouts)."""
    a, e = sort_samples(actual), sort_samples(expected)
    assert a.num_rows == e.num_rows, f"{a.num_rows} rows stored, {e.num_rows} expected"
    for col in ("point", "ts_ms", "value_text"):
        assert a[col].to_pylist() == e[col].to_pylist(), f"column {col} differs"
    av, ev = a["value"].to_pylist(), e["value"].to_pylist()
    mismatches = [
        i for i, (x, y) in enumerate(zip(av, ev, strict=True)) if not (x == y or (x != x and y != y))
    ]
    assert not mismatches, f"{len(mismatches)} values differ, first at row {mismatches[0]}"


@contextmanager
def remote_backends(bucket: S3Bucket) -> Iterator[dict[str, Any]]:
    """Stack keyword arguments for the production backends on local peers: D1 through the official SDK against
    the fake D1 endpoint, R2 through dagster-aws against the moto S3 server."""
    with run_fake_d1() as fake:
        yield {
            "hot_resource": D1HotStoreResource(
                account_id=fake.account_id,
                database_id=fake.database_id,
                api_token=fake.token,
                base_url=fake.base_url,
            ),
            "cold_resource": ColdStoreResource(
                r2_endpoint_url=bucket.endpoint_url,
                r2_bucket=bucket.bucket,
                r2_access_key_id=bucket.access_key_id,
                r2_secret_access_key=bucket.secret_access_key,
                region_name="us-east-1",
            ),
        }
