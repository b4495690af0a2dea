"""Property-based contract tests of the OpenAPI document (schemathesis): every answer matches the published
schema (status codes, content types, bodies, headers), invalid input is rejected with a documented 4xx, and
stateful sequences (sites -> points -> query, following the document's links) hold too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.service import ApiConfig, create_app
from bv_pipeline_tests.test_api import _data as D
from bv_pipeline_tests.test_api._export_launcher import RecordingLauncher

TOKEN = "fuzz-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    ds = D.build(tmp_path_factory.mktemp("fuzz"))
    reader = TimeseriesReader(ds.hot, ds.cold, max_workers=2)
    # A small sample budget so fuzzed windows hit the 413 path instead of reading for long.
    cfg = ApiConfig(
        api_tokens=(TOKEN,),
        allowed_origins=("https://charts.example.com",),
        max_raw_samples=50_000,
        rate_limit_per_s=1e6,
        rate_limit_burst=1_000_000,
    )
    # Exports are launched by a recording launcher (no Dagster webserver here); they stay queued.
    launcher = RecordingLauncher(str(ds.root / "hot.sqlite3"), str(ds.root / "cold"), now_ms=0)
    app = create_app(reader, cfg, export_launcher=launcher)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    reader.close()


# Rules across parameters that JSON Schema cannot state (documented in the parameters' descriptions): a
# schema-valid request may break them and get 400 with one of these codes, never a plain invalid_parameter.
CROSS_PARAMETER_ERRORS = {"invalid_time_range", "range_too_long", "too_many_points", "unknown_points"}
# Schema-valid requests may also name an unknown site (404) or exceed the sample budget (413); exports are
# accepted (202) until the token's active-export limit answers 429.
ACCEPTED = {200, 202, 304, 404, 413, 429}


def schema_valid_data_is_accepted(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """schemathesis' positive_data_acceptance, but knowing the cross-parameter rules above."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code == 400:
        assert response.json()["error"] in CROSS_PARAMETER_ERRORS, response.text
    else:
        assert response.status_code in ACCEPTED, (response.status_code, response.text)
    return None


# Driven through Hypothesis directly: schemathesis' pytest plugin (from_fixture/parametrize) does not run under
# the pytest version this project pins.
EXPECTED_OPERATIONS = {
    "GET /timeseries/query",
    "GET /sites",
    "GET /sites/{site}/points",
    "GET /health",
    "POST /exports",
    "GET /exports",
    "GET /exports/{export_id}",
    "GET /exports/{export_id}/download",
}


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"]
)
def test_every_answer_matches_the_document(api_schema: schemathesis.BaseSchema, mode: GenerationMode) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} == EXPECTED_OPERATIONS
    if mode == GenerationMode.NEGATIVE:
        # Negative data needs a parameter to break; /sites and /health take none.
        operations = [op for op in operations if list(op.iter_parameters())]
    statuses: dict[str, set[int]] = {}
    for op in operations:

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def run(case: schemathesis.Case) -> None:
            # Every default check: no 5xx, documented status/content type/headers, body schema, and for
            # negative data a 4xx rejection.
            response = case.call_and_validate(
                headers=AUTH,
                excluded_checks=[positive_data_acceptance],
                additional_checks=[schema_valid_data_is_accepted],
            )
            statuses.setdefault(case.operation.label, set()).add(response.status_code)

        run()
    assert set(statuses) == {op.label for op in operations}
    if mode == GenerationMode.NEGATIVE:
        assert statuses["GET /timeseries/query"] <= {400, 401, 403, 404, 413}
        assert 400 in statuses["GET /timeseries/query"] and 400 in statuses["GET /sites/{site}/points"]
    else:
        assert 200 in statuses["GET /sites"] and 200 in statuses["GET /health"]


def test_stateful_links(api_schema: schemathesis.BaseSchema) -> None:
    """Sequences that follow the document's links: a listed site's points, then a listed point's samples."""
    # Exports have no links into the chain (their own lifecycle is tested in test_exports_api.py).
    machine = api_schema.exclude(path_regex="^/exports").as_state_machine()
    seen: list[tuple[str, int]] = []

    class Authorized(machine):  # type: ignore[misc,valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": AUTH}

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            case.validate_response(
                response,
                excluded_checks=[positive_data_acceptance],
                additional_checks=[schema_valid_data_is_accepted],
                recorder=self.recorder,
            )

        def after_call(self, response: Any, case: schemathesis.Case) -> None:
            super().after_call(response, case)
            seen.append((case.operation.label, response.status_code))

    Authorized.run(
        settings=settings(
            max_examples=25,
            stateful_step_count=4,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
    )
    # The chain reached the points of a real site (found through /sites) and got samples of a listed point.
    assert ("GET /sites/{site}/points", 200) in seen
    assert ("GET /timeseries/query", 200) in seen


def test_errors_are_json_everywhere(api_schema: schemathesis.BaseSchema) -> None:
    """Answers outside the document's operations are JSON errors too: unknown paths, methods, CORS refusals."""
    from starlette.testclient import TestClient

    client = TestClient(api_schema.app)  # type: ignore[attr-defined]
    cases = [
        client.get("/no/such/path"),
        client.post("/sites", headers=AUTH),
        client.options(
            "/timeseries/query",
            headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "GET"},
        ),
        client.options(
            "/timeseries/query",
            headers={"Origin": "https://charts.example.com", "Access-Control-Request-Method": "DELETE"},
        ),
    ]
    assert [r.status_code for r in cases] == [404, 405, 400, 400]
    for r in cases:
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert set(body) == {"error", "detail"} and body["detail"]
    assert [r.json()["error"] for r in cases] == [
        "not_found",
        "method_not_allowed",
        "cors_rejected",
        "cors_rejected",
    ]
    assert "origin" in cases[2].json()["detail"] and "method" in cases[3].json()["detail"]


def test_document_lists_the_statuses_the_api_answers(api_schema: schemathesis.BaseSchema) -> None:
    doc = api_schema.raw_schema
    query = doc["paths"]["/timeseries/query"]["get"]["responses"]
    assert set(query) == {"200", "304", "400", "401", "403", "404", "413", "429", "503"}
    points = doc["paths"]["/sites/{site}/points"]["get"]["responses"]
    assert set(points) == {"200", "400", "401", "403", "404", "429"}
    assert "422" not in str(doc["paths"]) and "HTTPValidationError" not in str(doc)
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    assert all(query[s]["content"]["application/json"]["schema"] == error_ref for s in query if s >= "400")


def test_real_answers_match_the_document(api_schema: schemathesis.BaseSchema) -> None:
    """Generated requests rarely name a real site and point, so real 200/304 answers are checked explicitly: in
    every JSON shape (rows, columnar, raw, aggregated, downsampled), plus a 304 and discovery."""
    query = api_schema["/timeseries/query"]["GET"]
    lo, hi = D.day_bounds_ms(D.DAYS[2])[0], D.day_bounds_ms(D.DAYS[8])[1] - 1
    base = {
        "site_name": D.SITE,
        "point_names": f"{D.TEMP},{D.MODE},No.Such",
        "start_time": lo,
        "end_time": hi,
    }
    variants: list[dict[str, Any]] = [
        {},
        {"format": "columnar"},
        {"interval": "1h"},
        {"interval": "1d", "format": "columnar"},
        {"max_points": 50, "downsample": "lttb"},
    ]
    for extra in variants:
        response = query.Case(query={**base, **extra}).call_and_validate(headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.json()["metadata"]["coverage"]
    etag = query.Case(query=base).call(headers=AUTH).headers["etag"][0]  # schemathesis: name -> values
    not_modified = query.Case(query=base).call_and_validate(headers={**AUTH, "If-None-Match": etag})
    assert not_modified.status_code == 304
    points = api_schema["/sites/{site}/points"]["GET"].Case(path_parameters={"site": D.SITE})
    assert points.call_and_validate(headers=AUTH).json()["total"] == len(D.POINTS)


def test_unexpected_failure_is_a_json_500_without_internals(
    api_schema: schemathesis.BaseSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    app = api_schema.app  # type: ignore[attr-defined]

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals: /path/to/store")

    monkeypatch.setattr(app.state.reader, "query", broken)
    client = TestClient(app, raise_server_exceptions=False)
    lo = D.day_bounds_ms(D.DAYS[7])[0]
    params = {"site_name": D.SITE, "point_names": D.TEMP, "start_time": lo, "end_time": lo + 3_600_000}
    r = client.get("/timeseries/query", params=params, headers=AUTH)
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "internal_error", "detail": "unexpected server error"}
