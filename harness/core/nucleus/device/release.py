"""Which version of the nucleus this copy of the agent is: ``<distro>/release.json`` next to ``lib/``.

Why a file and not a constant: the harness ships the same agent code as several core versions (packaged
from ``fixtures/core-versions/<version>/release.json``), some with a deliberate defect of that release, so
an update, a failed start and a failed health check are real behaviour of the version that runs.
Layout of a launch directory: ``alts/<name>/distro/{release.json, lib/ggnucleus/*.py}``.
"""

from __future__ import annotations

import json
import os
from typing import Any

DEFAULT_VERSION = "2.0.0"
#: Defects a release may carry (``release.json`` key ``defect``):
DEFECTS = {
    "crash_on_start": "the nucleus exits with status 1 before it serves the CLI (fails to start)",
    "breaks_components": "the nucleus starts components with an empty PATH, so they error until BROKEN",
}


def release_file() -> str:
    """``<distro>/release.json`` for ``<distro>/lib/ggnucleus/release.py``."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(os.path.dirname(here)), "release.json")


def load_release(path: str | None = None) -> dict[str, Any]:
    """The release this code belongs to; a copy without release.json is the default version, no defect."""
    try:
        with open(path or release_file(), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data.setdefault("version", DEFAULT_VERSION)
    data.setdefault("defect", "")
    return data
