"""Recipes, platforms, recipe variables and version requirements of the nucleus agent (no processes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.nucleus.device.recipe import (
    RecipeError,
    interpolate,
    load_recipe,
    parse_recipe,
    platform_of,
)
from harness.core.nucleus.device.semver import VersionError, best, parse_version, satisfies
from harness.core.nucleus.device.settings import AgentSettings, SettingsError
from harness.core.nucleus.driver import load_recipe_file
from harness.paths import FIXTURES_DIR


def recipe(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.X",
        "ComponentVersion": "1.0.0",
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Run": "true"}}],
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"ComponentName": None}, "field 'ComponentName' is required"),
        ({"ComponentVersion": "1.0"}, "field 'ComponentVersion' must be MAJOR.MINOR.PATCH (got '1.0')"),
        ({"RecipeFormatVersion": "2019-01-01"}, "field 'RecipeFormatVersion' must be one of"),
        ({"ComponentType": "aws.greengrass.weird"}, "field 'ComponentType' must be one of"),
        (
            {"ComponentDependencies": {"Lib": {"VersionRequirement": ">=banana"}}},
            "field 'ComponentDependencies.Lib'.VersionRequirement",
        ),
        (
            {"ComponentDependencies": {"Lib": {"DependencyType": "MAYBE"}}},
            "DependencyType must be HARD or SOFT (got 'MAYBE')",
        ),
        ({"Manifests": [{"Lifecycle": {"Run": "a", "Startup": "b"}}]}, "either 'run' or 'startup', not both"),
        ({"Manifests": [{"Lifecycle": {"Launch": "a"}}]}, "unknown lifecycle key 'Launch'"),
        (
            {"Manifests": [{"Lifecycle": {"Install": {"Script": "a", "Timeout": -1}}}]},
            "'Timeout' must be a positive",
        ),
        (
            {"Manifests": [{"Artifacts": [{"Uri": "docker:hello"}]}]},
            "unsupported artifact URI 'docker:hello'",
        ),
    ],
)
def test_errors_name_the_file_and_field(over: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe(recipe(**over), "recipes/x.json")
    assert str(err.value).startswith("recipes/x.json") and message in str(err.value)


def test_lifecycle_forms_and_case() -> None:
    r = parse_recipe(
        recipe(
            Manifests=[
                {
                    "lifecycle": {
                        "setenv": {"A": "1"},
                        "install": {
                            "script": "i",
                            "timeout": 5,
                            "Skipif": "onpath git",
                            "Setenv": {"B": "2"},
                        },
                        "Run": "r",
                    }
                }
            ]
        ),
        "x",
    )
    m = r.select(platform_of("aarch64"))
    assert m.setenv == {"A": "1"}
    assert (m.lifecycle["install"].script, m.lifecycle["install"].timeout) == ("i", 5.0)
    assert m.lifecycle["install"].skipif == "onpath git" and m.lifecycle["install"].setenv == {"B": "2"}
    assert m.lifecycle["run"].script == "r" and m.lifecycle["run"].timeout is None


@pytest.mark.parametrize(
    ("machine", "arch", "detail"),
    [
        ("x86_64", "amd64", ""),
        ("aarch64", "aarch64", ""),
        ("armv7l", "arm", "arm71"),
        ("armv6l", "arm", "arm61"),
    ],
)
def test_platform_selection_first_match(machine: str, arch: str, detail: str) -> None:
    manifests = [
        {
            "Platform": {"os": "linux", "architecture": "arm", "architecture.detail": "arm61"},
            "Lifecycle": {"Run": "v6"},
        },
        {"Platform": {"os": "linux", "architecture": "/^(arm|aarch64)$/"}, "Lifecycle": {"Run": "arm"}},
        {"Platform": {"os": "linux", "architecture": "amd64"}, "Lifecycle": {"Run": "x86"}},
    ]
    r = parse_recipe(recipe(Manifests=manifests), "x")
    assert platform_of(machine) == {"os": "linux", "architecture": arch, "architecture.detail": detail}
    chosen = r.select(platform_of(machine)).lifecycle["run"].script
    assert chosen == {"x86_64": "x86", "aarch64": "arm", "armv7l": "arm", "armv6l": "v6"}[machine]
    with pytest.raises(RecipeError, match="has no manifest for this platform"):
        r.select(platform_of("riscv64"))


def test_interpolation() -> None:
    config = {"Message": "hi", "N": {"x": [1, 2]}}

    def resolve(component: str, ns: str, key: str) -> str | None:
        if ns == "configuration" and not component:
            from harness.core.nucleus.device.recipe import config_text, json_pointer

            found, value = json_pointer(config, key)
            return config_text(value) if found else None
        return {"artifacts": "/art", "work": "/work"}.get(ns) if key == "path" else None

    text = "run {artifacts:path}/a {configuration:/Message} {configuration:/N} {configuration:/missing} " + (
        "{work:path}"
    )
    assert interpolate(text, resolve) == 'run /art/a hi {"x":[1,2]} {configuration:/missing} /work'
    assert interpolate("{Other:configuration:/x} ${HOME}", resolve) == "{Other:configuration:/x} ${HOME}"


def test_yaml_recipe_fixtures_convert_exactly() -> None:
    for path in sorted((FIXTURES_DIR / "components" / "recipes").iterdir()):
        data = load_recipe_file(path)
        parsed = parse_recipe(json.loads(json.dumps(data)), str(path))
        assert path.name.startswith(f"{parsed.name}-{parsed.version}.")
        assert parsed.select(platform_of("armv6l")).lifecycle, f"{path}: no lifecycle for linux"


def test_yaml_is_refused_on_the_target(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_text("RecipeFormatVersion: '2020-01-25'\n")
    with pytest.raises(RecipeError, match="YAML recipes are not read on the target"):
        load_recipe(str(p))


@pytest.mark.parametrize(
    ("version", "requirement", "ok"),
    [
        ("1.2.3", ">=1.0.0 <2.0.0", True),
        ("2.0.0", ">=1.0.0 <2.0.0", False),
        ("1.9.9", "^1.2.0", True),
        ("1.1.0", "^1.2.0", False),
        ("0.2.9", "^0.2.3", True),
        ("0.3.0", "^0.2.3", False),
        ("1.2.9", "~1.2", True),
        ("1.3.0", "~1.2.0", False),
        ("1.0.0", "1.0.0", True),
        ("1.0.1", "1.0.0", False),
        ("1.4.2", "1.x", True),
        ("3.0.0", "*", True),
        ("5.1.0", "<1.0.0 || >=5", True),
        ("1.0.0-rc.1", ">=1.0.0", False),
        ("1.0.0", ">= 1.0.0", True),
    ],
)
def test_version_requirements(version: str, requirement: str, ok: bool) -> None:
    assert satisfies(version, requirement) is ok


def test_versions_order_and_best() -> None:
    assert parse_version("1.0.0-alpha") < parse_version("1.0.0-alpha.1") < parse_version("1.0.0-beta")
    assert parse_version("1.0.0-rc.1") < parse_version("1.0.0") < parse_version("1.0.10")
    assert best(["1.0.0", "1.10.0", "1.9.0", "2.0.0"], ["^1.0.0"]) == "1.10.0"
    assert best(["1.0.0"], [">=2.0.0"]) is None
    with pytest.raises(VersionError):
        parse_version("1.0")


def test_agent_settings_reject_typos_and_unknown_faults() -> None:
    with pytest.raises(SettingsError, match=r"unknown key\(s\) install_timout; allowed: install_timeout"):
        AgentSettings.from_mapping({"install_timout": 1})
    with pytest.raises(SettingsError, match=r"unknown fault\(s\) nope; allowed: component_output_dropped"):
        AgentSettings(faults=["nope"])
    with pytest.raises(SettingsError, match="must be a number"):
        AgentSettings.from_mapping({"tick": "fast"})
    s = AgentSettings.from_mapping(
        json.loads(AgentSettings(install_timeout=2, faults=["timeouts_ignored"]).to_json())
    )
    assert s.install_timeout == 2 and s.has("timeouts_ignored")
