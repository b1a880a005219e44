"""Component recipes: validation, platform selection of a manifest, lifecycle steps, recipe variables.

Why its own module: a recipe is user input; every error must name the file and the field (as the nucleus
does when it rejects a deployment), and the host tests it without a target.

Recipes are read as JSON only. The target's python3 has no YAML parser, so the host driver converts YAML
recipes to JSON (with PyYAML, exactly) before copying them onto the target; a ``.yaml`` file that reaches
the agent is refused with that explanation rather than half-parsed by an ad-hoc YAML subset.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .semver import VersionError, is_version, parse_requirement

FORMAT_VERSIONS = ("2020-01-25",)
STEPS = ("bootstrap", "install", "startup", "run", "shutdown", "recover")
COMPONENT_TYPES = (
    "aws.greengrass.generic",
    "aws.greengrass.lambda",
    "aws.greengrass.plugin",
    "aws.greengrass.nucleus",
)
DEPENDENCY_TYPES = ("HARD", "SOFT")
#: ``uname -m`` -> the architecture names recipes use (the nucleus's PlatformResolver).
ARCHITECTURES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "i686": ("x86", ""),
    "i386": ("x86", ""),
    "aarch64": ("aarch64", ""),
    "arm64": ("aarch64", ""),
    "armv7l": ("arm", "arm71"),
    "armv6l": ("arm", "arm61"),
}


class RecipeError(ValueError):
    """A recipe the agent cannot use; the message names the file and the field."""


@dataclass
class Step:
    """One lifecycle step: a shell script with its own timeout, environment and skip condition."""

    script: str
    timeout: float | None = None
    setenv: dict[str, str] = field(default_factory=dict)
    skipif: str = ""
    requires_privilege: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "script": self.script,
            "timeout": self.timeout,
            "setenv": dict(self.setenv),
            "skipif": self.skipif,
            "requiresPrivilege": self.requires_privilege,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        return cls(
            script=str(data.get("script", "")),
            timeout=data.get("timeout"),
            setenv={str(k): str(v) for k, v in (data.get("setenv") or {}).items()},
            skipif=str(data.get("skipif") or ""),
            requires_privilege=bool(data.get("requiresPrivilege", False)),
        )


@dataclass
class Artifact:
    uri: str
    unarchive: str = "NONE"
    read: str = "OWNER"
    execute: str = "NONE"
    digest: str = ""
    algorithm: str = ""

    @property
    def filename(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class Manifest:
    platform: dict[str, str]
    lifecycle: dict[str, Step]
    setenv: dict[str, str]
    artifacts: list[Artifact]


@dataclass
class Dependency:
    requirement: str
    type: str = "HARD"


@dataclass
class Recipe:
    name: str
    version: str
    format_version: str
    component_type: str
    default_config: dict[str, Any]
    dependencies: dict[str, Dependency]
    manifests: list[Manifest]
    source: str

    def select(self, platform: dict[str, str]) -> Manifest:
        """The first manifest whose platform matches, as the nucleus picks it."""
        for m in self.manifests:
            if platform_matches(m.platform, platform):
                return m
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(platform.items()) if v)
        raise RecipeError(
            f"{self.source}: component {self.name}-{self.version} has no manifest for this platform "
            f"({wanted}); manifests: {[m.platform for m in self.manifests]}"
        )


def _field(
    data: dict[str, Any], key: str, source: str, kind: type | tuple[type, ...], default: Any = None
) -> Any:
    if key not in data:
        if default is None:
            raise RecipeError(f"{source}: field {key!r} is required")
        return default
    value = data[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RecipeError(f"{source}: field {key!r} must be a {names} (got {value!r})")
    return value


def _ci(data: dict[str, Any], key: str) -> Any:
    """Case-insensitive lookup: recipes write ``Lifecycle``/``lifecycle``, ``Run``/``run``."""
    for k, v in data.items():
        if k.lower() == key.lower():
            return v
    return None


def _step(value: Any, where: str) -> Step:
    if isinstance(value, str):
        return Step(script=value)
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: a lifecycle step is a script or an object with 'Script' (got {value!r})")
    script = _ci(value, "script")
    if not isinstance(script, str):
        raise RecipeError(f"{where}: field 'Script' is required and must be a string")
    timeout = _ci(value, "timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise RecipeError(f"{where}: field 'Timeout' must be a positive number of seconds (got {timeout!r})")
    setenv = _ci(value, "setenv") or {}
    if not isinstance(setenv, dict):
        raise RecipeError(f"{where}: field 'Setenv' must be an object")
    skipif = _ci(value, "skipif") or ""
    if skipif and not re.match(r"^(onpath|exists)\s+\S", str(skipif)):
        raise RecipeError(f"{where}: field 'Skipif' must be 'onpath <executable>' or 'exists <file>'")
    return Step(
        script=script,
        timeout=float(timeout) if timeout is not None else None,
        setenv={str(k): str(v) for k, v in setenv.items()},
        skipif=str(skipif),
        requires_privilege=bool(_ci(value, "requiresprivilege") or False),
    )


def _lifecycle(raw: Any, where: str) -> tuple[dict[str, Step], dict[str, str]]:
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: 'Lifecycle' must be an object")
    steps: dict[str, Step] = {}
    setenv: dict[str, str] = {}
    for key, value in raw.items():
        k = key.lower()
        if k == "setenv":
            if not isinstance(value, dict):
                raise RecipeError(f"{where}.Setenv: must be an object")
            setenv = {str(a): str(b) for a, b in value.items()}
        elif k in STEPS:
            steps[k] = _step(value, f"{where}.{key}")
        else:
            raise RecipeError(f"{where}: unknown lifecycle key {key!r}; allowed: Setenv, {', '.join(STEPS)}")
    if "run" in steps and "startup" in steps:
        raise RecipeError(f"{where}: a lifecycle has either 'run' or 'startup', not both")
    return steps, setenv


def _artifacts(raw: Any, where: str) -> list[Artifact]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RecipeError(f"{where}: 'Artifacts' must be a list")
    out = []
    for i, a in enumerate(raw):
        w = f"{where}.Artifacts[{i}]"
        if not isinstance(a, dict) or not isinstance(a.get("Uri") or a.get("URI"), str):
            raise RecipeError(f"{w}: field 'Uri' is required")
        uri = str(a.get("Uri") or a.get("URI"))
        if not re.match(r"^(s3|greengrass|file|https)://", uri):
            raise RecipeError(f"{w}: unsupported artifact URI {uri!r} (s3://, greengrass:// or file://)")
        unarchive = str(a.get("Unarchive", "NONE")).upper()
        if unarchive not in ("NONE", "ZIP"):
            raise RecipeError(f"{w}: field 'Unarchive' must be NONE or ZIP (got {unarchive!r})")
        perm = a.get("Permission") or {}
        if not isinstance(perm, dict):
            raise RecipeError(f"{w}: field 'Permission' must be an object")
        read = str(perm.get("Read", "OWNER")).upper()
        execute = str(perm.get("Execute", "NONE")).upper()
        for label, value in (("Read", read), ("Execute", execute)):
            if value not in ("NONE", "OWNER", "ALL"):
                raise RecipeError(
                    f"{w}: field 'Permission.{label}' must be NONE, OWNER or ALL (got {value!r})"
                )
        out.append(
            Artifact(
                uri=uri,
                unarchive=unarchive,
                read=read,
                execute=execute,
                digest=str(a.get("Digest", "")),
                algorithm=str(a.get("Algorithm", "")),
            )
        )
    return out


def parse_recipe(data: Any, source: str) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is an object")
    fmt = _field(data, "RecipeFormatVersion", source, str)
    if fmt not in FORMAT_VERSIONS:
        raise RecipeError(
            f"{source}: field 'RecipeFormatVersion' must be one of {FORMAT_VERSIONS} (got {fmt!r})"
        )
    name = _field(data, "ComponentName", source, str)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name):
        raise RecipeError(
            f"{source}: field 'ComponentName' {name!r} has characters a component name cannot have"
        )
    version = _field(data, "ComponentVersion", source, str)
    if not is_version(version):
        raise RecipeError(f"{source}: field 'ComponentVersion' must be MAJOR.MINOR.PATCH (got {version!r})")
    ctype = _field(data, "ComponentType", source, str, "aws.greengrass.generic")
    if ctype not in COMPONENT_TYPES:
        raise RecipeError(f"{source}: field 'ComponentType' must be one of {', '.join(COMPONENT_TYPES)}")
    conf = _field(data, "ComponentConfiguration", source, dict, {})
    default_config = conf.get("DefaultConfiguration", {})
    if not isinstance(default_config, dict):
        raise RecipeError(f"{source}: field 'ComponentConfiguration.DefaultConfiguration' must be an object")
    deps: dict[str, Dependency] = {}
    for dep_name, dep in _field(data, "ComponentDependencies", source, dict, {}).items():
        where = f"{source}: field 'ComponentDependencies.{dep_name}'"
        if not isinstance(dep, dict):
            raise RecipeError(f"{where} must be an object")
        req = str(dep.get("VersionRequirement", "*"))
        try:
            parse_requirement(req)
        except VersionError as exc:
            raise RecipeError(f"{where}.VersionRequirement: {exc}") from None
        dtype = str(dep.get("DependencyType", "HARD")).upper()
        if dtype not in DEPENDENCY_TYPES:
            raise RecipeError(f"{where}.DependencyType must be HARD or SOFT (got {dtype!r})")
        deps[str(dep_name)] = Dependency(req, dtype)
    raw_manifests = _field(data, "Manifests", source, list, [])
    manifests = []
    for i, m in enumerate(raw_manifests):
        where = f"{source}: Manifests[{i}]"
        if not isinstance(m, dict):
            raise RecipeError(f"{where} must be an object")
        platform = m.get("Platform") or {}
        if not isinstance(platform, dict):
            raise RecipeError(f"{where}.Platform must be an object")
        steps, setenv = _lifecycle(_ci(m, "lifecycle"), f"{where}.Lifecycle")
        manifests.append(
            Manifest(
                platform={str(k): str(v) for k, v in platform.items()},
                lifecycle=steps,
                setenv=setenv,
                artifacts=_artifacts(m.get("Artifacts"), where),
            )
        )
    if not manifests and _ci(data, "lifecycle") is not None:
        steps, setenv = _lifecycle(_ci(data, "lifecycle"), f"{source}: Lifecycle")
        manifests.append(Manifest(platform={}, lifecycle=steps, setenv=setenv, artifacts=[]))
    return Recipe(name, version, fmt, ctype, default_config, deps, manifests, source)


def load_recipe(path: str) -> Recipe:
    if path.endswith((".yaml", ".yml")):
        raise RecipeError(
            f"{path}: YAML recipes are not read on the target (its python3 has no YAML parser); "
            "convert them to JSON first (the harness's host driver does this before copying them)"
        )
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except ValueError as exc:
        raise RecipeError(f"{path}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read: {exc}") from None
    return parse_recipe(data, path)


# -- platforms ------------------------------------------------------------------------------------
def platform_of(machine: str, os_name: str = "linux") -> dict[str, str]:
    arch, detail = ARCHITECTURES.get(machine, (machine, ""))
    return {"os": os_name, "architecture": arch, "architecture.detail": detail}


def _value_matches(want: str, have: str) -> bool:
    if want in ("*", ""):
        return True
    if len(want) > 1 and want.startswith("/") and want.endswith("/"):
        return re.fullmatch(want[1:-1], have) is not None
    return want == have


def platform_matches(want: dict[str, str], have: dict[str, str]) -> bool:
    return all(_value_matches(v, have.get(k, "")) for k, v in want.items())


# -- recipe variables -----------------------------------------------------------------------------
_VARIABLE = re.compile(
    r"\{(?:(?P<component>[A-Za-z0-9][A-Za-z0-9._-]*):)?(?P<ns>artifacts|configuration|work|kernel|iot):"
    r"(?P<key>[^{}]*)\}"
)
#: Resolves (component or "" for the recipe's own, namespace, key) to text, or None to leave it as is.
Resolver = Callable[[str, str, str], "str | None"]


def interpolate(text: str, resolve: Resolver) -> str:
    """Replace ``{artifacts:path}``, ``{configuration:/a/b}``, ``{Other:configuration:/x}``, ... in text."""

    def sub(m: re.Match[str]) -> str:
        got = resolve(m.group("component") or "", m.group("ns"), m.group("key"))
        return m.group(0) if got is None else got

    return _VARIABLE.sub(sub, text)


def json_pointer(doc: Any, pointer: str) -> tuple[bool, Any]:
    """(found, value) of an RFC 6901 pointer such as ``/Message`` in a configuration object."""
    if pointer in ("", "/"):
        return True, doc
    if not pointer.startswith("/"):
        return False, None
    node = doc
    for raw in pointer[1:].split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False, None
    return True, node


def config_text(value: Any) -> str:
    """How a configuration value appears in a script: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def recipe_file_name(name: str, version: str) -> str:
    return f"{name}-{version}.recipe.json"


def list_recipe_files(directory: str) -> list[str]:
    return sorted(
        os.path.join(directory, f)
        for f in os.listdir(directory)
        if f.endswith((".json", ".yaml", ".yml")) and not f.startswith(".")
    )
