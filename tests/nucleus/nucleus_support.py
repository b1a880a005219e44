"""Helpers of the nucleus tests: small agent timeouts and recipes written on the fly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.nucleus.driver import NucleusDriver

#: Small timeouts so every rule is exercised in about a second.
FAST = {
    "tick": 0.05,
    "deployment_stable": 0.3,
    "kill_grace": 1.0,
    "install_timeout": 1.5,
    "startup_timeout": 1.5,
    "shutdown_timeout": 1.5,
    "recover_timeout": 1.5,
    "deployment_timeout": 20.0,
}
WAIT_S = 20.0


MakeNucleus = Callable[..., NucleusDriver]


def write_recipe(
    directory: Path,
    name: str,
    version: str = "1.0.0",
    lifecycle: dict[str, Any] | None = None,
    *,
    dependencies: dict[str, dict[str, str]] | None = None,
    config: dict[str, Any] | None = None,
    manifests: list[dict[str, Any]] | None = None,
) -> Path:
    """A JSON recipe in ``directory`` (created); ``lifecycle`` goes into one manifest for any platform."""
    directory.mkdir(parents=True, exist_ok=True)
    recipe: dict[str, Any] = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "Manifests": manifests
        if manifests is not None
        else [{"Platform": {"os": "linux"}, "Lifecycle": lifecycle or {}}],
    }
    if dependencies:
        recipe["ComponentDependencies"] = dependencies
    if config is not None:
        recipe["ComponentConfiguration"] = {"DefaultConfiguration": config}
    path = directory / f"{name}-{version}.json"
    path.write_text(json.dumps(recipe, indent=1))
    return path
