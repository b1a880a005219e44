"""Shared fixtures: a provisioned offline cloud (one core, a few devices) reused by read-only tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cloud.api import Cloud

CORE = "TestCore"
DEVICES = 4


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    """A fresh cloud per test (own state directory); key generation inline for speed and determinism."""
    c = Cloud(tmp_path / "state", workers=1)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """One core with two connectivity entries and DEVICES client devices (dev-0000...), plus a lone device."""
    c = Cloud(tmp_path_factory.mktemp("cloud") / "state", workers=1)
    try:
        c.provision_core(
            CORE, ["127.0.0.1:8883", {"HostAddress": "localhost", "PortNumber": 8884, "Id": "second"}]
        )
        task = c.provision_devices(CORE, DEVICES, "dev-")
        assert task["taskStatus"] == "Success", task
        yield c
    finally:
        c.close()
