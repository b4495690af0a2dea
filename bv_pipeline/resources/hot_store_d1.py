"""``D1HotStore``: the hot tier in Cloudflare D1 over REST, through the official SDK's
``client.d1.database.query(batch=...)`` (dict rows, ints preserved).

Request budget: the account-wide Cloudflare API limit is 1,200 requests / 5 min, so statements are packed into
``batch`` requests bounded by ``max_body_bytes`` (default 4 MB) and ``max_rows_per_request``. A batch is one
transaction on D1, which is what makes each planned unit of ``BlockHotStore`` atomic. The SDK retries POSTs
(408/409/429/5xx), and every write is idempotent, so a replayed batch changes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import cloudflare
import httpx

from bv_pipeline.resources.hot_store_base import BlockHotStore, Rows
from bv_pipeline.storage import hot_sql as q


class D1Error(RuntimeError):
    """A D1 request failed; carries the HTTP status and D1's error code/message (e.g. 7500 for SQL errors)."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _d1_error(exc: Exception) -> D1Error:
    if isinstance(exc, cloudflare.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        errors = body.get("errors") or []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        code = first.get("code")
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
        return D1Error(
            f"D1 request failed with HTTP {exc.status_code}: {detail or exc.message}",
            status=exc.status_code,
            code=int(code) if isinstance(code, int) else None,
        )
    return D1Error(f"D1 request failed: {type(exc).__name__}: {exc}")


class D1HotStore(BlockHotStore):
    """Hot tier in Cloudflare D1 through ``client.d1.database.query(batch=...)`` (dict rows, ints preserved)."""

    backend = "d1"

    def __init__(
        self,
        account_id: str,
        database_id: str,
        api_token: str,
        *,
        base_url: str | None = None,
        max_retries: int = 2,
        client: cloudflare.Cloudflare | None = None,
        max_body_bytes: int = 4_000_000,
        max_rows_per_request: int = 50_000,
        timeout_s: float = 60.0,
    ) -> None:
        super().__init__()
        self.account_id = account_id
        self.database_id = database_id
        self.max_body_bytes = max_body_bytes
        self.max_rows_per_request = max_rows_per_request
        self._count_lock = threading.Lock()
        self._requests = 0
        self._last_meta: list[dict[str, Any]] = []
        self.rows_written = 0  # as D1 reports them in meta, cumulative (observability, tests, bench)
        self.rows_read = 0
        if client is None:
            # Count every HTTP attempt, SDK retries included, with an httpx request hook on our own client.
            self._hooked = True
            http = cloudflare.DefaultHttpxClient(event_hooks={"request": [self._on_request]})
            client = cloudflare.Cloudflare(
                api_token=api_token,
                base_url=base_url,
                max_retries=max_retries,
                http_client=http,
                timeout=httpx.Timeout(timeout_s, connect=5.0),
            )
        else:
            self._hooked = False  # a caller's client: count 1 + retries_taken per call instead
        self._client = client

    def _on_request(self, request: httpx.Request) -> None:
        with self._count_lock:
            self._requests += 1

    def _add_requests(self, n: int) -> None:
        with self._count_lock:
            self._requests += n

    @property
    def requests_made(self) -> int:
        return self._requests

    def close(self) -> None:
        self._client.close()

    def _query(self, statements: Sequence[q.Statement]) -> list[dict[str, Any]]:
        """One batch request; returns the per-statement results (``results`` rows are dicts). Raises D1Error."""
        batch = [st.as_batch_item() for st in statements]
        try:
            raw = self._client.d1.database.with_raw_response.query(
                self.database_id,
                account_id=self.account_id,
                batch=batch,  # type: ignore[arg-type]  # the SDK types params as strings; numbers work at runtime
            )
        except cloudflare.APIError as exc:
            if not self._hooked:
                self._add_requests(1)
            raise _d1_error(exc) from exc
        if not self._hooked:
            self._add_requests(1 + raw.retries_taken)
        payload = raw.http_response.json()
        if not payload.get("success", False):
            errors = payload.get("errors") or []
            code = errors[0].get("code") if errors else None
            raise D1Error(f"D1 reported failure: {errors}", status=raw.http_response.status_code, code=code)
        results: list[dict[str, Any]] = payload.get("result") or []
        self._last_meta = [r.get("meta") or {} for r in results]
        self.rows_written += sum(int((r.get("meta") or {}).get("rows_written") or 0) for r in results)
        self.rows_read += sum(int((r.get("meta") or {}).get("rows_read") or 0) for r in results)
        for r in results:
            if not r.get("success", True):
                raise D1Error(f"D1 statement failed: {r}", status=raw.http_response.status_code)
        return results

    @property
    def client(self) -> cloudflare.Cloudflare:
        return self._client

    def __enter__(self) -> D1HotStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _batch_limits(self) -> tuple[int, int]:
        return self.max_body_bytes, self.max_rows_per_request

    def _run(self, statements: Sequence[q.Statement]) -> list[Rows]:
        if not statements:
            return []
        return [r.get("results") or [] for r in self._query(statements)]

    def last_meta(self) -> list[dict[str, Any]]:
        """``meta`` of each statement of the last request (rows_read/rows_written as D1 reports them)."""
        return list(self._last_meta)


def list_databases(client: cloudflare.Cloudflare, account_id: str, prefix: str) -> list[str]:
    """Names of the account's databases starting with ``prefix`` (the API's name filter matches substrings)."""
    try:
        return [
            d.name
            for d in client.d1.database.list(account_id=account_id, name=prefix)
            if d.name and d.name.startswith(prefix)
        ]
    except cloudflare.APIError as exc:
        raise _d1_error(exc) from exc


def find_or_create_database(client: cloudflare.Cloudflare, account_id: str, name: str) -> str:
    """The uuid of the database called exactly ``name``, created when there is none."""
    try:
        for d in client.d1.database.list(account_id=account_id, name=name):
            if d.name == name and d.uuid:
                return d.uuid
        try:
            created = client.d1.database.create(account_id=account_id, name=name)
        except cloudflare.BadRequestError:
            # Created meanwhile by another process (name taken): look it up again.
            for d in client.d1.database.list(account_id=account_id, name=name):
                if d.name == name and d.uuid:
                    return d.uuid
            raise
    except cloudflare.APIError as exc:
        raise _d1_error(exc) from exc
    if not created.uuid:
        raise D1Error(f"D1 created database {name!r} but returned no uuid")
    return created.uuid
