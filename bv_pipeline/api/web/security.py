"""Bearer-token authentication and the per-token rate limit, as one FastAPI dependency (``Authorized``).

Tokens are compared with ``hmac.compare_digest`` against every configured token, so timing does not reveal which
(if any) matched; rate-limit buckets are keyed by a hash of the token, never the token itself.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bv_pipeline.api.web.errors import ApiError


class TokenBucket:
    """Per-key token buckets: ``rate`` tokens/s refill up to ``burst``. Thread-safe."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            tokens, last = self._state.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._state[key] = (tokens - 1.0, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


class Authorizer:
    """Checks a bearer token against the configured ones and takes a rate-limit token for it."""

    def __init__(self, tokens: Sequence[str], limiter: TokenBucket) -> None:
        self._tokens = [t.encode() for t in tokens]
        self._limiter = limiter

    def __call__(self, creds: HTTPAuthorizationCredentials | None) -> str:
        """The rate-limit key of a valid token; raises 401 (missing), 403 (wrong) or 429 (rate limited)."""
        if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
            raise ApiError(
                401,
                "unauthorized",
                "send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        given = creds.credentials.encode()
        ok = False
        for t in self._tokens:
            ok |= hmac.compare_digest(given, t)
        if not ok:
            raise ApiError(403, "forbidden", "the bearer token is not valid for this API")
        key = hashlib.sha256(given).hexdigest()
        wait = self._limiter.take(key)
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests for this token; retry in {wait:.1f} s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return key


_bearer = HTTPBearer(auto_error=False, description="An API token from BV_API_TOKENS")


def authorize(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> str:
    authorizer: Authorizer = request.app.state.authorizer
    return authorizer(creds)


# A route parameter of this type requires a valid bearer token (and documents the scheme in OpenAPI).
Authorized = Annotated[str, Depends(authorize)]
