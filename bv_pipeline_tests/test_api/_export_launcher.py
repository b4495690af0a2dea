"""A launcher for API tests: records launches and runs the real ``export_job`` in-process when asked.

The GraphQL launcher (the production path) is exercised end to end in ``test_exports_e2e.py``; here the API's
own behaviour is tested without a webserver.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from bv_pipeline.api.export_launcher import ExportLauncher, LaunchError, export_run_config, export_run_tags
from bv_pipeline.ops.exports import export_job
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import SqliteHotStoreResource
from bv_pipeline.storage.exports import ExportStatus

_ids = itertools.count(1)


@dataclass
class RecordingLauncher(ExportLauncher):
    hot_path: str
    cold_dir: str
    now_ms: int
    fail_with: str | None = None  # launch() raises LaunchError with this message
    launched: list[tuple[str, dict, dict]] = field(default_factory=list)  # (run id, run config, tags)
    states: dict[str, str] = field(default_factory=dict)  # run id -> Dagster status name

    def launch(self, status: ExportStatus, *, max_samples: int | None) -> str:
        if self.fail_with is not None:
            raise LaunchError(self.fail_with)
        run_id = f"run-{next(_ids):04d}"
        self.launched.append(
            (run_id, export_run_config(status, max_samples=max_samples), export_run_tags(status))
        )
        self.states[run_id] = "QUEUED"
        return run_id

    def run_state(self, run_id: str) -> str | None:
        return self.states.get(run_id)

    def run_url(self, run_id: str) -> str | None:
        return f"http://dagster.test/runs/{run_id}"

    def run_pending(self) -> None:
        """Execute every queued launch with the real job (in-process), as the run queue would."""
        for run_id, run_config, tags in self.launched:
            if self.states[run_id] != "QUEUED":
                continue
            result = export_job.execute_in_process(
                run_config=run_config,
                tags=tags,
                resources={
                    "hot_store": SqliteHotStoreResource(sqlite_path=self.hot_path),
                    "cold_store": ColdStoreResource(local_dir=self.cold_dir),
                    "clock": ClockResource(fixed_now_ms=self.now_ms),
                },
                raise_on_error=False,
            )
            self.states[run_id] = "SUCCESS" if result.success else "FAILURE"
