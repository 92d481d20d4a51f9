"""Shared test set-up."""
from __future__ import annotations

import pytest
import structlog


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """Each test starts from structlog's defaults: a command run in-process configures logging
    globally (a level filter included), and a later test capturing log events must not inherit it."""
    structlog.reset_defaults()
    yield
