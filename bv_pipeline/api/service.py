"""Compatibility entry point: the HTTP layer lives in ``bv_pipeline.api.web`` (one module per concept)."""

from bv_pipeline.api.web.app import create_app
from bv_pipeline.api.web.config import ApiConfig

__all__ = ["ApiConfig", "create_app"]
