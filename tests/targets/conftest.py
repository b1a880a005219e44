from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.profiles import find_profile
from harness.targets.qemu_user import QemuUserTarget


@pytest.fixture
def make_target() -> Iterator[object]:
    made: list[QemuUserTarget] = []

    def make(name: str) -> QemuUserTarget:
        t = QemuUserTarget(find_profile(name))
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()
