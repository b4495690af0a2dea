"""Launching export runs on Dagster from the read API.

``GraphQLExportLauncher`` calls the Dagster webserver's GraphQL API (``launchRun`` through the public
``dagster_graphql.DagsterGraphQLClient``), which is how the UI launches runs: the API process needs neither the
code location nor access to Dagster's storage, the run goes through the instance's run coordinator (queue,
tag limits) like any other, and it works unchanged when Dagster runs on another host.
"""

from __future__ import annotations

import abc
from typing import Any
from urllib.parse import urlparse

from bv_pipeline.storage.exports import ExportStatus

TERMINAL_RUN_STATES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


class LaunchError(RuntimeError):
    """Dagster could not be reached or refused the run."""


def export_run_config(status: ExportStatus, *, max_samples: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {"owner": status.owner, "export_id": status.export_id}
    if max_samples is not None:
        config["max_samples"] = max_samples
    return {"ops": {"export_timeseries": {"config": config}}}


def export_run_tags(status: ExportStatus) -> dict[str, str]:
    return {"bv/export": status.export_id, "bv/site": status.spec.site}


class ExportLauncher(abc.ABC):
    """Starts the run that writes an export, and reports a run's state."""

    @abc.abstractmethod
    def launch(self, status: ExportStatus, *, max_samples: int | None) -> str:
        """Launch ``export_job`` for the export; returns the run id. Raises ``LaunchError``."""

    @abc.abstractmethod
    def run_state(self, run_id: str) -> str | None:
        """The run's Dagster status name (QUEUED, STARTED, SUCCESS, FAILURE, CANCELED, ...); None if unknown."""

    def run_url(self, run_id: str) -> str | None:
        """Where the run is shown in the Dagster UI, if known."""
        return None


class GraphQLExportLauncher(ExportLauncher):
    """Launches through the Dagster webserver at ``graphql_url`` (``http(s)://host[:port][/prefix]/graphql``)."""

    def __init__(self, graphql_url: str, *, timeout_s: int = 30) -> None:
        parsed = urlparse(graphql_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"{graphql_url!r} is not an http(s) URL")
        path = parsed.path.rstrip("/")
        if path.endswith("/graphql"):
            path = path[: -len("/graphql")]
        self._hostname = parsed.hostname
        self._port = parsed.port
        self._https = parsed.scheme == "https"
        self._prefix = path
        self._timeout_s = timeout_s
        self.ui_url = f"{parsed.scheme}://{parsed.netloc}{path}"
        self._client: Any = None

    def _graphql(self) -> Any:
        if self._client is None:
            from dagster_graphql import DagsterGraphQLClient

            self._client = DagsterGraphQLClient(
                self._hostname,
                port_number=self._port,
                use_https=self._https,
                timeout=self._timeout_s,
                path_prefix=self._prefix,
            )
        return self._client

    def launch(self, status: ExportStatus, *, max_samples: int | None) -> str:
        from bv_pipeline.ops.exports import EXPORT_JOB

        try:
            return str(
                self._graphql().submit_job_execution(
                    EXPORT_JOB,
                    run_config=export_run_config(status, max_samples=max_samples),
                    tags=export_run_tags(status),
                )
            )
        except Exception as exc:  # connection errors come from requests/gql, refusals from dagster_graphql
            raise LaunchError(
                f"could not launch {EXPORT_JOB} on Dagster at {self.ui_url}: {exc}"[:500]
            ) from exc

    def run_state(self, run_id: str) -> str | None:
        try:
            return str(self._graphql().get_run_status(run_id).value)
        except Exception:  # status is advisory: the export's own status document is the source of truth
            return None

    def run_url(self, run_id: str) -> str | None:
        return f"{self.ui_url}/runs/{run_id}"
