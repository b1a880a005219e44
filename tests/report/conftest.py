"""Fixtures for the report writer tests."""

from __future__ import annotations

import pytest
from report_samples import build_run

from harness.report import Run


@pytest.fixture
def sample_run() -> Run:
    """A finished-looking run (still partial until a test calls ``finish``) with every outcome."""
    return build_run()


@pytest.fixture
def load_run() -> Run:
    """The sample run plus a results.json load block."""
    return build_run(load=True)
