"""Fixtures for the board checks' tests: a healthy fake board and V1/V2 profiles."""

from __future__ import annotations

import pytest
from fakeboard import Board, make_profile

from harness.profiles import DeviceProfile


@pytest.fixture
def board() -> Board:
    return Board()


@pytest.fixture
def v1() -> DeviceProfile:
    return make_profile("v1")


@pytest.fixture
def v2() -> DeviceProfile:
    return make_profile("v2")
