"""Small helpers shared by the simulator tests: walking timeseries pages and turning them into tables."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import httpx
import pyarrow as pa

from bv_pipeline.storage.samples import SAMPLE_SCHEMA, sort_samples
from bv_pipeline_tests.fixtures.ace import ACE_TEST_DAY_START_MS

MINUTE_MS = 60_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def iso(ms: int) -> str:
    """Naive ISO-8601 query time (UTC) for epoch milliseconds."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).replace(tzinfo=None).isoformat()


def day_ms(minutes: float) -> int:
    """Epoch ms ``minutes`` after the start of the fixtures' test day."""
    return ACE_TEST_DAY_START_MS + int(minutes * MINUTE_MS)


def wire_time_ms(text: str) -> int:
    parsed = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    return (parsed - EPOCH) // dt.timedelta(milliseconds=1)


def decode_cursor(cursor: str) -> dict[str, Any]:
    return json.loads(base64.b64decode(cursor))


def walk_pages(
    client: httpx.Client,
    site: str,
    start_ms: int,
    end_ms: int,
    *,
    page_size: int,
    raw: bool = True,
    max_pages: int = 10_000,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow next_cursor until has_more is false. Returns (all samples in wire order, all page bodies)."""
    samples: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(max_pages):
        params: dict[str, Any] = {
            "start_time": iso(start_ms),
            "end_time": iso(end_ms),
            "page_size": page_size,
            "raw_data": "true" if raw else "false",
        }
        if cursor:
            params["cursor"] = cursor
        response = client.get(f"/sites/{site}/timeseries/paginated", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        samples.extend(body["point_samples"])
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return samples, pages
        cursor = body["next_cursor"]
        assert cursor
    raise AssertionError(f"pagination did not finish within {max_pages} pages")


def samples_to_table(samples: list[dict[str, Any]]) -> pa.Table:
    """Wire samples to SAMPLE_SCHEMA (numeric when float() parses), sorted by (point, ts_ms)."""
    points, ts, values, texts = [], [], [], []
    for s in samples:
        points.append(s["name"])
        ts.append(wire_time_ms(s["time"]))
        try:
            values.append(float(s["value"]))
            texts.append(None)
        except ValueError:
            values.append(None)
            texts.append(s["value"])
    table = pa.Table.from_arrays(
        [
            pa.array(points, pa.string()),
            pa.array(ts, pa.int64()),
            pa.array(values, pa.float64()),
            pa.array(texts, pa.string()),
        ],
        schema=SAMPLE_SCHEMA,
    )
    return sort_samples(table)
