"""Versions of the reference nucleus as update packages: ``fixtures/core-versions/<version>/release.json``.

Why built at run time: a version is the agent code the harness ships plus that version's ``release.json``
(and, for a bad release, its defect), so the packages never go stale against the code. ``package`` writes
what a V2 deployment needs (``recipes/aws.greengrass.Nucleus-<v>.json`` and
``artifacts/aws.greengrass.Nucleus/<v>/nucleus-<v>.tar.gz``, whose ``distro/`` becomes a launch
directory); the same tarball is the V1 OTA package of that version.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness.core.nucleus.device.loader import LAUNCHER, LAUNCHER_PATH
from harness.errors import InputError
from harness.paths import FIXTURES_DIR

NUCLEUS = "aws.greengrass.Nucleus"
#: What the harness installs as ``alts/init``.
BASE_VERSION = "2.0.0"
VERSIONS_DIR = FIXTURES_DIR / "core-versions"
DEVICE_PACKAGE = Path(__file__).with_name("device")
#: Fixed mtime, so a version's tarball (and its digest) is the same on every run.
MTIME = 1_700_000_000


@dataclass(frozen=True)
class CorePackage:
    version: str
    defect: str
    recipe_dir: Path
    artifact_dir: Path
    tarball: Path


def available() -> list[str]:
    return sorted(p.name for p in VERSIONS_DIR.iterdir() if (p / "release.json").is_file())


def release(version: str) -> dict[str, str]:
    path = VERSIONS_DIR / version / "release.json"
    if not path.is_file():
        raise InputError(
            f"{VERSIONS_DIR}: no core version {version!r} (no {version}/release.json); "
            f"available: {', '.join(available())}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != version:
        raise InputError(f"{path}: field 'version' must be {version!r} (the directory name)")
    return {"version": version, "defect": str(data.get("defect", ""))}


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, MTIME
    tar.addfile(info, io.BytesIO(data))


def distro_files(version: str) -> dict[str, bytes]:
    """``distro/``-relative path -> content of one version's launch directory: its release, the agent
    code and the loader the service starts (``bin/loader``, as in Greengrass V2)."""
    release(version)
    files = {
        "release.json": (VERSIONS_DIR / version / "release.json").read_bytes(),
        LAUNCHER_PATH: LAUNCHER.encode(),
    }
    for src in sorted(DEVICE_PACKAGE.glob("*.py")):
        files[f"lib/ggnucleus/{src.name}"] = src.read_bytes()
    return files


def file_mode(name: str) -> int:
    """The mode of a ``distro/``-relative file: programs in ``bin/`` are executable."""
    return 0o755 if name.startswith("bin/") else 0o644


def package(version: str, into: Path) -> CorePackage:
    """Write the recipe and the artifact of ``version`` under ``into`` (recipes/, artifacts/)."""
    rel = release(version)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in distro_files(version).items():
            _add(tar, f"distro/{name}", data, file_mode(name))
    blob = buf.getvalue()
    artifact_dir = into / "artifacts"
    tarball = artifact_dir / NUCLEUS / version / f"nucleus-{version}.tar.gz"
    tarball.parent.mkdir(parents=True, exist_ok=True)
    tarball.write_bytes(blob)
    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": NUCLEUS,
        "ComponentVersion": version,
        "ComponentType": "aws.greengrass.nucleus",
        "ComponentDescription": f"reference nucleus {version}",
        "Manifests": [
            {
                "Platform": {"os": "linux"},
                "Artifacts": [
                    {
                        "Uri": f"s3://gg-harness-core-versions/nucleus-{version}.tar.gz",
                        "Digest": base64.b64encode(hashlib.sha256(blob).digest()).decode(),
                        "Algorithm": "SHA-256",
                    }
                ],
            }
        ],
    }
    recipe_dir = into / "recipes"
    recipe_dir.mkdir(parents=True, exist_ok=True)
    (recipe_dir / f"{NUCLEUS}-{version}.json").write_text(json.dumps(recipe, indent=1))
    return CorePackage(version, rel["defect"], recipe_dir, artifact_dir, tarball)
