"""Local deployments: the record the CLI reports, and the plan that turns a request into component specs.

Planning is pure bookkeeping on the agent's store (``<root>/packages``), done before anything running is
touched, so a bad request fails without side effects on components (as on a real core): it imports the
recipes of ``--recipeDir``, resolves ``--merge``/``--remove`` against the current root components and every
``VersionRequirement``, picks each component's manifest for this platform, copies its artifacts from
``--artifactDir/<Name>/<Version>/``, applies ``--update-config`` (RESET, then MERGE, as the nucleus does)
and interpolates the recipe variables into the lifecycle scripts.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Any

from .lifecycle import ComponentSpec
from .persist import fsync_dir, sync_tree, write_json_durably
from .recipe import (
    Manifest,
    Recipe,
    RecipeError,
    Step,
    config_text,
    interpolate,
    json_pointer,
    list_recipe_files,
    load_recipe,
    recipe_file_name,
)
from .semver import VersionError, best, satisfies

QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, CANCELED = "QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "CANCELED"
TERMINAL = (SUCCEEDED, FAILED, CANCELED)


class DeploymentFailed(Exception):
    """Why a deployment failed, with the nucleus's error stack and error types for ``deployment status``."""

    def __init__(self, cause: str, stack: list[str] | None = None, types: list[str] | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.stack = ["DEPLOYMENT_FAILURE", *(stack or [])]
        self.types = types or ["REQUEST_ERROR"]


@dataclass
class DeploymentRecord:
    """A local deployment as ``<root>/deployments/<id>.json`` (written X+ -> X~ -> X)."""

    id: str
    request: dict[str, Any]
    created: float = field(default_factory=time.time)
    status: str = QUEUED
    detailed: str = ""
    error_stack: list[str] = field(default_factory=list)
    error_types: list[str] = field(default_factory=list)
    cause: str = ""
    plan: dict[str, Any] | None = None
    updated: float = field(default_factory=time.time)

    @classmethod
    def new(cls, request: dict[str, Any]) -> DeploymentRecord:
        return cls(id=str(uuid.uuid4()), request=request)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeploymentRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def public(self) -> dict[str, Any]:
        """What ``deployment status`` shows."""
        return {
            "deploymentId": self.id,
            "status": self.status,
            "createdOn": self.created,
            "detailedStatus": self.detailed,
            "errorStack": self.error_stack,
            "errorTypes": self.error_types,
            "failureCause": self.cause,
        }


def deep_merge(base: Any, update: Any) -> Any:
    if isinstance(base, dict) and isinstance(update, dict):
        out = dict(base)
        for k, v in update.items():
            out[k] = deep_merge(out.get(k), v) if k in out else copy.deepcopy(v)
        return out
    return copy.deepcopy(update)


def _reset(config: dict[str, Any], default: dict[str, Any], pointer: str) -> dict[str, Any]:
    """``RESET`` of one JSON pointer: back to the recipe default there, or removed when it has none."""
    if pointer in ("", "/"):
        return copy.deepcopy(default)
    keys = [k.replace("~1", "/").replace("~0", "~") for k in pointer.lstrip("/").split("/")]
    found, value = json_pointer(default, pointer)
    out = copy.deepcopy(config)
    node: Any = out
    for k in keys[:-1]:
        if not isinstance(node, dict):
            return out
        node = node.setdefault(k, {})
    if isinstance(node, dict):
        if found:
            node[keys[-1]] = copy.deepcopy(value)
        else:
            node.pop(keys[-1], None)
    return out


class Store:
    """The agent's component store: recipes by name and version, artifacts per version."""

    def __init__(self, root: str, atomic: bool = True) -> None:
        self.root = root
        self.atomic = atomic
        self.recipes_dir = os.path.join(root, "packages", "recipes")
        self.artifacts_dir = os.path.join(root, "packages", "artifacts")
        self.unarchived_dir = os.path.join(root, "packages", "artifacts-unarchived")
        for d in (self.recipes_dir, self.artifacts_dir, self.unarchived_dir):
            os.makedirs(d, exist_ok=True)

    def artifacts_path(self, name: str, version: str) -> str:
        return os.path.join(self.artifacts_dir, name, version)

    def unarchived_path(self, name: str, version: str) -> str:
        return os.path.join(self.unarchived_dir, name, version)

    def import_recipes(self, directory: str) -> list[Recipe]:
        if not os.path.isdir(directory):
            raise DeploymentFailed(f"--recipeDir {directory} is not a directory", ["RECIPE_DIR_MISSING"])
        imported = []
        for path in list_recipe_files(directory):
            try:
                recipe = load_recipe(path)
            except RecipeError as exc:
                raise DeploymentFailed(str(exc), ["RECIPE_PARSE_ERROR"]) from None
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            dest = os.path.join(self.recipes_dir, recipe_file_name(recipe.name, recipe.version))
            write_json_durably(dest, data, atomic=self.atomic)
            imported.append(recipe)
        return imported

    def index(self) -> dict[str, dict[str, str]]:
        """name -> version -> recipe file, from what the store holds."""
        out: dict[str, dict[str, str]] = {}
        for f in os.listdir(self.recipes_dir):
            if not f.endswith(".recipe.json"):
                continue
            path = os.path.join(self.recipes_dir, f)
            try:
                r = load_recipe(path)
            except RecipeError:
                continue
            out.setdefault(r.name, {})[r.version] = path
        return out

    def recipe(self, name: str, version: str) -> Recipe:
        path = os.path.join(self.recipes_dir, recipe_file_name(name, version))
        try:
            return load_recipe(path)
        except RecipeError as exc:
            raise DeploymentFailed(str(exc), ["RECIPE_PARSE_ERROR"]) from None

    def install_artifacts(self, recipe: Recipe, manifest: Manifest, artifact_dir: str | None) -> None:
        """Copy (and unarchive) a version's artifacts into the store, each by rename, verifying digests."""
        dest_dir = self.artifacts_path(recipe.name, recipe.version)
        os.makedirs(dest_dir, exist_ok=True)
        for art in manifest.artifacts:
            dest = os.path.join(dest_dir, art.filename)
            src = (
                os.path.join(artifact_dir, recipe.name, recipe.version, art.filename) if artifact_dir else ""
            )
            if src and os.path.isfile(src):
                fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".incoming-")
                os.close(fd)
                shutil.copyfile(src, tmp)
                _check_digest(tmp, art.digest, art.algorithm, recipe, art.uri)
                os.replace(tmp, dest)
            elif not os.path.isfile(dest):
                where = (
                    os.path.join(artifact_dir, recipe.name, recipe.version)
                    if artifact_dir
                    else "(no --artifactDir)"
                )
                raise DeploymentFailed(
                    f"artifact {art.uri} of {recipe.name}-{recipe.version} not found in {where}",
                    ["ARTIFACT_NOT_FOUND"],
                )
            mode = {"NONE": 0o600, "OWNER": 0o600, "ALL": 0o644}[art.read]
            if art.execute == "OWNER":
                mode |= 0o100
            elif art.execute == "ALL":
                mode |= 0o111
            os.chmod(dest, mode)
            if art.unarchive == "ZIP":
                self._unzip(dest, recipe)

    def _unzip(self, archive: str, recipe: Recipe) -> None:
        base = self.unarchived_path(recipe.name, recipe.version)
        os.makedirs(base, exist_ok=True)
        stem = os.path.basename(archive).rsplit(".", 1)[0]
        final = os.path.join(base, stem)
        tmp = tempfile.mkdtemp(dir=base, prefix=".unzip-")
        try:
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    target = os.path.realpath(os.path.join(tmp, member))
                    if not target.startswith(os.path.realpath(tmp) + os.sep):
                        raise DeploymentFailed(
                            f"{archive}: member {member!r} escapes the archive", ["ARTIFACT_ERROR"]
                        )
                zf.extractall(tmp)
        except zipfile.BadZipFile as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DeploymentFailed(f"{archive}: not a ZIP archive ({exc})", ["ARTIFACT_ERROR"]) from None
        sync_tree(tmp)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(os.path.dirname(final))


def _check_digest(path: str, digest: str, algorithm: str, recipe: Recipe, uri: str) -> None:
    if not digest:
        return
    algo = (algorithm or "SHA-256").replace("-", "").lower()
    try:
        h = hashlib.new(algo)
    except ValueError:
        raise DeploymentFailed(
            f"{recipe.source}: unknown digest algorithm {algorithm!r}", ["ARTIFACT_ERROR"]
        ) from None
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(65536), b""):
            h.update(block)
    if base64.b64encode(h.digest()).decode() != digest:
        os.unlink(path)
        raise DeploymentFailed(
            f"artifact {uri} of {recipe.name}-{recipe.version}: digest does not match the recipe",
            ["ARTIFACT_CHECKSUM_MISMATCH"],
        )


@dataclass
class Plan:
    """The outcome of planning: new roots, the spec of every component to run, what to stop."""

    roots: dict[str, str]
    services: dict[str, ComponentSpec]
    remove: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "roots": self.roots,
            "services": {n: s.to_config() for n, s in self.services.items()},
            "remove": self.remove,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(
            roots=dict(data["roots"]),
            services={n: ComponentSpec.from_config(n, s) for n, s in data["services"].items()},
            remove=list(data["remove"]),
        )


class Planner:
    """Turns a ``deployment create`` request into a ``Plan`` against the current configuration."""

    def __init__(
        self,
        store: Store,
        platform: dict[str, str],
        thing_name: str,
        current: dict[str, ComponentSpec],
        roots: dict[str, str],
    ) -> None:
        self.store = store
        self.platform = platform
        self.thing_name = thing_name
        self.current = current
        self.roots = roots

    def plan(self, request: dict[str, Any]) -> Plan:
        recipe_dir = request.get("recipeDir") or None
        artifact_dir = request.get("artifactDir") or None
        if artifact_dir and not os.path.isdir(artifact_dir):
            raise DeploymentFailed(
                f"--artifactDir {artifact_dir} is not a directory", ["ARTIFACT_DIR_MISSING"]
            )
        if recipe_dir:
            self.store.import_recipes(recipe_dir)
        roots = dict(self.roots)
        for name, version in (request.get("merge") or {}).items():
            roots[name] = version
        for name in request.get("remove") or []:
            roots.pop(name, None)
        selected = self._resolve(roots)
        recipes = {n: self.store.recipe(n, v) for n, v in selected.items()}
        manifests: dict[str, Manifest] = {}
        for n, r in recipes.items():
            try:
                manifests[n] = r.select(self.platform)
            except RecipeError as exc:
                raise DeploymentFailed(str(exc), ["NO_AVAILABLE_COMPONENT_VERSION"]) from None
        updates = request.get("configUpdate") or {}
        unknown = sorted(set(updates) - set(selected))
        if unknown:
            raise DeploymentFailed(
                f"--update-config names {', '.join(unknown)}, which this deployment does not include",
                ["INVALID_CONFIG_UPDATE"],
            )
        configs = {n: self._config(recipes[n], updates.get(n)) for n in selected}
        for n, r in recipes.items():
            self.store.install_artifacts(r, manifests[n], artifact_dir)
        services = {n: self._spec(recipes[n], manifests[n], configs, recipes) for n in selected}
        remove = sorted(set(self.current) - set(services))
        return Plan(roots=roots, services=services, remove=remove)

    # -- resolution -------------------------------------------------------------------------------
    def _resolve(self, roots: dict[str, str]) -> dict[str, str]:
        index = self.store.index()
        for name, version in roots.items():
            if version not in index.get(name, {}):
                have = ", ".join(sorted(index.get(name, {}))) or "none"
                raise DeploymentFailed(
                    f"no local recipe for {name}-{version} (in --recipeDir or the store; versions: {have})",
                    ["NO_AVAILABLE_COMPONENT_VERSION", "COMPONENT_VERSION_REQUIREMENTS_NOT_MET"],
                )
        selected = dict(roots)
        for _ in range(50):
            constraints: dict[str, list[tuple[str, str]]] = {}
            closure, queue = set(roots), list(roots)
            while queue:
                n = queue.pop(0)
                for dep, d in self.store.recipe(n, selected[n]).dependencies.items():
                    constraints.setdefault(dep, []).append((d.requirement, f"{n}-{selected[n]}"))
                    if dep not in closure:
                        closure.add(dep)
                        if dep not in selected:
                            selected[dep] = self._pick(dep, constraints[dep], index)
                        queue.append(dep)
            changed = False
            for dep, reqs in constraints.items():
                try:
                    ok = all(satisfies(selected[dep], r) for r, _ in reqs)
                except VersionError as exc:
                    raise DeploymentFailed(str(exc), ["COMPONENT_VERSION_REQUIREMENTS_NOT_MET"]) from None
                if ok:
                    continue
                if dep in roots:
                    raise self._unsatisfied(dep, reqs, f"the deployment pins {roots[dep]}")
                selected[dep] = self._pick(dep, reqs, index)
                changed = True
            selected = {n: v for n, v in selected.items() if n in closure}
            if not changed:
                return selected
        raise DeploymentFailed(
            "dependency resolution did not settle", ["COMPONENT_VERSION_REQUIREMENTS_NOT_MET"]
        )

    def _pick(self, name: str, reqs: list[tuple[str, str]], index: dict[str, dict[str, str]]) -> str:
        versions = sorted(index.get(name, {}))
        if not versions:
            raise DeploymentFailed(
                f"no local recipe for {name}, required by {', '.join(by for _, by in reqs)}",
                ["NO_AVAILABLE_COMPONENT_VERSION"],
            )
        current = self.current.get(name)
        if (
            current is not None
            and current.version in versions
            and all(satisfies(current.version, r) for r, _ in reqs)
        ):
            return current.version
        got = best(versions, [r for r, _ in reqs])
        if got is None:
            raise self._unsatisfied(name, reqs, f"local versions {', '.join(versions)}")
        return got

    @staticmethod
    def _unsatisfied(name: str, reqs: list[tuple[str, str]], have: str) -> DeploymentFailed:
        wants = ", ".join(f"{by} requires {r}" for r, by in reqs)
        return DeploymentFailed(
            f"No local component version satisfies the requirements. Component {name} version constraints: "
            f"{wants} ({have})",
            ["NO_AVAILABLE_COMPONENT_VERSION", "COMPONENT_VERSION_REQUIREMENTS_NOT_MET"],
        )

    # -- configuration and scripts ----------------------------------------------------------------
    def _config(self, recipe: Recipe, update: Any) -> dict[str, Any]:
        default = recipe.default_config
        current = self.current.get(recipe.name)
        config = deep_merge(default, current.configuration) if current is not None else copy.deepcopy(default)
        if update is None:
            return dict(config)
        if not isinstance(update, dict) or set(update) - {"MERGE", "RESET"}:
            raise DeploymentFailed(
                f"--update-config for {recipe.name} must be an object with MERGE and/or RESET "
                f"(got {update!r})",
                ["INVALID_CONFIG_UPDATE"],
            )
        for pointer in update.get("RESET") or []:
            config = _reset(config, default, str(pointer))
        merge = update.get("MERGE")
        if merge is not None:
            if not isinstance(merge, dict):
                raise DeploymentFailed(
                    f"--update-config {recipe.name}.MERGE must be an object", ["INVALID_CONFIG_UPDATE"]
                )
            config = deep_merge(config, merge)
        return dict(config)

    def _spec(
        self,
        recipe: Recipe,
        manifest: Manifest,
        configs: dict[str, dict[str, Any]],
        recipes: dict[str, Recipe],
    ) -> ComponentSpec:
        name = recipe.name

        def resolve(component: str, ns: str, key: str) -> str | None:
            target = component or name
            if component and component not in recipe.dependencies:
                return None  # the nucleus only resolves other components that are dependencies
            version = recipes[target].version if target in recipes else ""
            if ns == "configuration":
                found, value = json_pointer(configs.get(target, {}), key)
                return config_text(value) if found else None
            if ns == "artifacts" and key == "path":
                return self.store.artifacts_path(target, version)
            if ns == "artifacts" and key == "decompressedPath":
                return self.store.unarchived_path(target, version)
            if ns == "work" and key == "path":
                return os.path.join(self.store.root, "work", target)
            if ns == "kernel" and key == "rootPath":
                return self.store.root
            if ns == "iot" and key == "thingName":
                return self.thing_name
            return None

        lifecycle = {
            step: Step(
                script=interpolate(s.script, resolve),
                timeout=s.timeout,
                setenv={k: interpolate(v, resolve) for k, v in s.setenv.items()},
                skipif=interpolate(s.skipif, resolve),
                requires_privilege=s.requires_privilege,
            )
            for step, s in manifest.lifecycle.items()
        }
        return ComponentSpec(
            name=name,
            version=recipe.version,
            component_type=recipe.component_type,
            configuration=configs[name],
            dependencies={d: dep.type for d, dep in recipe.dependencies.items()},
            lifecycle=lifecycle,
            setenv={k: interpolate(v, resolve) for k, v in manifest.setenv.items()},
        )
