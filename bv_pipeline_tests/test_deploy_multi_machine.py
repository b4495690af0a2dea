"""The multi-machine instance files (``deploy/multi-machine/``) and the settings guard, without Docker or a cluster.

Each file is appended to ``deploy/dagster.yaml`` exactly as ``deploy/multi-machine.md`` says, and the result goes
through Dagster's own validation: the instance schema (``dagster_instance_config``), then the launcher's and the
compute-log manager's config schemas, then building both from the instance ref as every Dagster process does (the
Docker launcher needs no daemon to be built; the Kubernetes launcher is built against a throwaway kubeconfig, never
contacted; the PostgreSQL storage is not opened: the end-to-end test uses a real one). Both launchers then launch a
run as the daemon does, against a recording Docker Engine API / with the cluster's batch API replaced by a
recorder, to check the container or Job they would create. What happens after (pulling the image, the container
or pod actually running) is not tested here.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.compute_log_manager import ComputeLogManager
from dagster._core.test_utils import instance_for_test
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import deserialize_value
from dagster._serdes.config_class import class_from_code_pointer

from bv_pipeline.config import ConfigError, Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
FRAGMENTS = {"docker": DEPLOY / "multi-machine" / "docker.yaml", "k8s": DEPLOY / "multi-machine" / "k8s.yaml"}
INSTANCE_ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "R2_BUCKET": "ace-timeseries",
    "R2_ENDPOINT_URL": "https://acct.r2.cloudflarestorage.com",
}
# Settings a run never needs: the read API's, one machine's own paths, the alert sensors' (they run in the code
# server), the embedded simulator's, and the test hook for the D1 endpoint.
NOT_FOR_RUNS = re.compile(
    r"BV_API_.*|BV_ALLOWED_ORIGINS|BV_DAGSTER_GRAPHQL_URL|BV_EXPORT_.*|PROMETHEUS_MULTIPROC_DIR"
    r"|BV_DATA_DIR|DAGSTER_HOME|BV_ALERT_.*|BV_SIM_.*|CLOUDFLARE_BASE_URL"
)
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: bv-pipeline}}]
current-context: x
"""


def instance_text(kind: str) -> str:
    """What deploy/multi-machine.md installs: ``cat deploy/dagster.yaml deploy/multi-machine/<kind>.yaml``."""
    return (DEPLOY / "dagster.yaml").read_text() + FRAGMENTS[kind].read_text()


def validated_section(config: Mapping[str, Any], section: str) -> tuple[type, Mapping[str, Any]]:
    """The section's class (imported) and its config processed through the class's own schema."""
    data = config[section]
    klass = class_from_code_pointer(data["module"], data["class"])
    result = process_config(klass.config_type(), data.get("config") or {})
    if not result.success:
        raise DagsterInvalidConfigError(f"{section}: invalid {data['class']} config", result.errors, data)
    return klass, result.value


def built_from(home: Path) -> tuple[Any, Any]:
    """The run launcher and compute-log manager as every Dagster process builds them from DAGSTER_HOME (the
    instance ref's class data, rehydrated), without opening the PostgreSQL storage."""
    ref = InstanceRef.from_dir(str(home))
    assert ref.run_launcher_data is not None
    return ref.run_launcher_data.rehydrate(RunLauncher), ref.compute_logs_data.rehydrate(ComputeLogManager)


@pytest.fixture
def instance_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("kind", sorted(FRAGMENTS))
def test_fragment_appends_to_the_production_profile_and_validates(
    kind: str, tmp_path: Path, instance_env: None
) -> None:
    base, fragment = (yaml.safe_load(p.read_text()) for p in (DEPLOY / "dagster.yaml", FRAGMENTS[kind]))
    assert set(fragment) == {"run_launcher", "compute_logs"} and not set(fragment) & set(base)
    (tmp_path / "dagster.yaml").write_text(instance_text(kind))
    config, _ = dagster_instance_config(str(tmp_path))  # the whole instance schema, as every process loads it
    assert {k: v for k, v in config.items() if k in base} == {k: v for k, v in base.items()}
    launcher, _ = validated_section(config, "run_launcher")
    logs, logs_config = validated_section(config, "compute_logs")
    assert launcher.__name__ == {"docker": "DockerRunLauncher", "k8s": "K8sRunLauncher"}[kind]
    assert logs.__name__ == "S3ComputeLogManager"
    assert logs_config["bucket"] == INSTANCE_ENV["R2_BUCKET"]  # {env: ...} resolved like every process does
    assert logs_config["endpoint_url"] == INSTANCE_ENV["R2_ENDPOINT_URL"]


def test_a_misspelt_launcher_key_is_refused(instance_env: None) -> None:
    config = yaml.safe_load(instance_text("docker"))
    config["run_launcher"]["config"]["env_var"] = config["run_launcher"]["config"].pop("env_vars")
    with pytest.raises(DagsterInvalidConfigError, match="run_launcher"):
        validated_section(config, "run_launcher")


def test_docker_instance_builds_and_passes_every_run_setting(tmp_path: Path, instance_env: None) -> None:
    (tmp_path / "dagster.yaml").write_text(instance_text("docker"))
    launcher, logs = built_from(tmp_path)
    assert type(launcher).__name__ == "DockerRunLauncher"
    assert type(logs).__name__ == "S3ComputeLogManager"
    passed = list(launcher.env_vars)
    assert len(passed) == len(set(passed))
    settings_vars = set(
        re.findall(r'"([A-Z][A-Z0-9]*_[A-Z0-9_]+)"', (ROOT / "bv_pipeline/config.py").read_text())
    )
    expected = {v for v in settings_vars if not NOT_FOR_RUNS.fullmatch(v)}
    expected |= {*(k for k in INSTANCE_ENV if k.startswith("DAGSTER_PG_")), *_compute_log_vars()}
    assert set(passed) == expected, {"missing": expected - set(passed), "extra": set(passed) - expected}
    # The launcher copies each name from the daemon's environment and fails on an unset one: the shared
    # environment file names them all.
    env_file = (DEPLOY / "bv-pipeline.env.example").read_text()
    assert [v for v in passed if not re.search(rf"^{v}=", env_file, re.M)] == []


def _compute_log_vars() -> set[str]:
    return {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REQUEST_CHECKSUM_CALCULATION",
        "AWS_RESPONSE_CHECKSUM_VALIDATION",
    }


def test_k8s_launcher_builds_from_the_file(tmp_path: Path, instance_env: None) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    config = yaml.safe_load(instance_text("k8s"))
    # In the cluster the launcher reads its service account; here a kubeconfig that is parsed, never contacted.
    config["run_launcher"]["config"].update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    launcher, _ = built_from(tmp_path)
    assert type(launcher).__name__ == "K8sRunLauncher"
    assert launcher.env_secrets == ["bv-pipeline-env"]  # the whole shared environment file
    assert launcher.job_namespace == "bv-pipeline" and launcher.dagster_home == "/opt/dagster/dagster_home"
    assert launcher.resources["limits"]["memory"] == "4Gi"


class RecordingDockerEngine(BaseHTTPRequestHandler):
    """Answers the Docker Engine API calls a container launch makes, recording them (stands in for dockerd)."""

    calls: list[tuple[str, str, Any]]

    def _answer(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path, None))
        if self.path.endswith("/version"):
            self._answer(200, {"ApiVersion": "1.45", "Version": "26.0.0"})
        elif "/containers/" in self.path:
            self._answer(200, {"Id": "c0ffee", "Name": "/run", "State": {}, "Config": {}})
        else:
            self._answer(404, {"message": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.calls.append(("POST", self.path.split("?")[0], json.loads(self.rfile.read(length) or b"null")))
        if "/containers/create" in self.path:
            self._answer(201, {"Id": "c0ffee", "Warnings": []})
        elif self.path.endswith("/start"):
            self._answer(204)
        else:
            self._answer(404, {"message": "not found"})

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def docker_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str, Any]]]:
    calls: list[tuple[str, str, Any]] = []
    handler = type("Handler", (RecordingDockerEngine,), {"calls": calls})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{server.server_address[1]}")
    try:
        yield calls
    finally:
        server.shutdown()
        server.server_close()


def _run_with_origin(instance: Any) -> dg.DagsterRun:
    """A run as the daemon hands it to the launcher: with the code server's origin (systemd unit's paths)."""
    origin = JobPythonOrigin(
        "hot_sync_job",
        RepositoryPythonOrigin(
            executable_path="/opt/bv-pipeline/.venv/bin/python",
            code_pointer=ModuleCodePointer("bv_pipeline.definitions", "defs", "/opt/bv-pipeline"),
            container_image=None,
            entry_point=["dagster"],
        ),
    )
    return instance.add_run(dg.DagsterRun(job_name="hot_sync_job", job_code_origin=origin))


def test_docker_launch_creates_a_container_that_needs_no_local_disk(
    instance_env: None, docker_engine: list[tuple[str, str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """launch_run as the daemon calls it, with the file's launcher config, against a recording Docker API."""
    from dagster_docker import DockerRunLauncher

    fragment = yaml.safe_load(FRAGMENTS["docker"].read_text())
    _, config = validated_section(fragment, "run_launcher")
    daemon_env = {name: f"value-of-{name}" for name in config["env_vars"]}
    for name, value in daemon_env.items():
        monkeypatch.setenv(name, value)
    launcher = DockerRunLauncher(**config)
    with instance_for_test(overrides={"compute_logs": fragment["compute_logs"]}) as instance:
        launcher.register_instance(instance)
        run = _run_with_origin(instance)
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    [create] = [body for method, path, body in docker_engine if path.endswith("/containers/create")]
    assert [path.rsplit("/", 1)[-1] for method, path, _ in docker_engine if method == "POST"] == [
        "create",
        "start",
    ]
    assert create["Image"] == "registry.example.com/bv-pipeline:0.1.0"
    env = dict(item.split("=", 1) for item in create["Env"])
    assert env == {
        **daemon_env,
        "DAGSTER_RUN_JOB_NAME": "hot_sync_job",
    }  # copied from the daemon's environment
    host = create["HostConfig"]
    assert host["NetworkMode"] == "bv-pipeline" and host["Memory"] == 4 * 1024**3
    assert not host.get("Binds") and not host.get("Mounts")  # nothing mounted from the launching host
    assert create["Cmd"][:3] == ["dagster", "api", "execute_run"]
    args = deserialize_value(create["Cmd"][3], ExecuteRunArgs)
    assert args.run_id == run.run_id and args.instance_ref is not None
    assert args.instance_ref.compute_logs_data.class_name == "S3ComputeLogManager"


class RecordingBatchApi:
    """Stands in for the cluster's batch API: keeps the Job objects the launcher submits."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, Any]] = []

    def create_namespaced_job(self, body: Any, namespace: str, **_: Any) -> None:
        self.jobs.append((namespace, body))


def test_k8s_launch_submits_a_job_that_needs_no_local_disk(tmp_path: Path, instance_env: None) -> None:
    """launch_run as the daemon calls it, with the file's launcher config; only the cluster API is replaced."""
    from dagster_k8s import K8sRunLauncher

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    fragment = yaml.safe_load(FRAGMENTS["k8s"].read_text())
    _, config = validated_section(fragment, "run_launcher")
    batch = RecordingBatchApi()
    launcher = K8sRunLauncher(
        **{**config, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)},
        k8s_client_batch_api=batch,
    )
    with instance_for_test(overrides={"compute_logs": fragment["compute_logs"]}) as instance:
        launcher.register_instance(instance)
        run = _run_with_origin(instance)
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    [(namespace, job)] = batch.jobs
    pod = job.spec.template.spec
    [container] = pod.containers
    assert namespace == "bv-pipeline" and container.image == "registry.example.com/bv-pipeline:0.1.0"
    assert [e.secret_ref.name for e in container.env_from] == ["bv-pipeline-env"]  # every shared setting
    assert container.resources.limits == {"memory": "4Gi"}
    assert pod.volumes in (None, []) and container.volume_mounts in (None, [])  # nothing mounted from a host
    # The pod runs `dagster api execute_run <args>`; the args carry the instance (compute logs on R2 included).
    assert container.args[:3] == ["dagster", "api", "execute_run"]
    args = deserialize_value(container.args[3], ExecuteRunArgs)
    assert args.run_id == run.run_id
    assert args.instance_ref is not None
    assert args.instance_ref.compute_logs_data.class_name == "S3ComputeLogManager"


def test_shared_backends_required_refuses_local_disk_defaults() -> None:
    d1 = {"CLOUDFLARE_ACCOUNT_ID": "a", "CLOUDFLARE_API_TOKEN": "t", "D1_DATABASE_ID": "d"}
    r2 = {
        "R2_ENDPOINT_URL": "https://acct.r2.cloudflarestorage.com",
        "R2_BUCKET": "bucket-b",
        "R2_ACCESS_KEY_ID": "k",
        "R2_SECRET_ACCESS_KEY": "s",
    }
    required = {
        "BV_REQUIRE_SHARED_BACKENDS": "true",
        "BV_ACE_RATE_LIMIT_URL": "postgresql://bv:secret@db.example:5432/bv",
    }
    assert Settings.from_env({**required, **d1, **r2}).require_shared_backends
    # ACE's shared budget must not fall back to a SQLite file on this machine's disk either.
    with pytest.raises(
        ConfigError, match=r"BV_REQUIRE_SHARED_BACKENDS is true but BV_ACE_RATE_LIMIT_URL not configured"
    ):
        Settings.from_env({"BV_REQUIRE_SHARED_BACKENDS": "true", **d1, **r2})
    for env, missing in (({**d1}, "R2"), ({**r2}, "D1"), ({}, "D1 (CLOUDFLARE_*) and R2")):
        with pytest.raises(
            ConfigError, match=rf"BV_REQUIRE_SHARED_BACKENDS is true but {re.escape(missing)}"
        ):
            Settings.from_env({**required, **env})
    # Per-site D1 databases need no database id.
    assert Settings.from_env(
        {
            **required,
            **r2,
            "BV_HOT_DATABASES": "per-site",
            "CLOUDFLARE_ACCOUNT_ID": "a",
            "CLOUDFLARE_API_TOKEN": "t",
        }
    ).use_d1
    assert not Settings.from_env({"BV_REQUIRE_SHARED_BACKENDS": "false"}).require_shared_backends
    with pytest.raises(ConfigError, match="BV_REQUIRE_SHARED_BACKENDS='maybe' is not a boolean"):
        Settings.from_env({"BV_REQUIRE_SHARED_BACKENDS": "maybe"})
