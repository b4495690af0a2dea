"""Per-app objects the routes depend on, kept on ``app.state`` by the app factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.web.config import ApiConfig


def _reader(request: Request) -> TimeseriesReader:
    return request.app.state.reader


def _config(request: Request) -> ApiConfig:
    return request.app.state.config


def _clock(request: Request) -> Callable[[], float]:
    return request.app.state.clock


Reader = Annotated[TimeseriesReader, Depends(_reader)]
Config = Annotated[ApiConfig, Depends(_config)]
Clock = Annotated[Callable[[], float], Depends(_clock)]
