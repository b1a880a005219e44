"""Device profiles: the shipped ones are valid, and malformed ones get a clear error naming file and field."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import InputError
from harness.profiles import find_profile, list_profile_files, load_profile_file, profile_schema

SHIPPED = ["qemu-armv6l", "qemu-armv7l", "qemu-aarch64", "native-x86_64", "example-ssh-board"]


def test_shipped_profiles_exist_and_validate() -> None:
    names = {p.stem for p in list_profile_files()}
    assert set(SHIPPED) <= names
    for name in SHIPPED:
        assert find_profile(name).name == name


def test_armv6l_profile_is_a_pi_zero() -> None:
    p = find_profile("qemu-armv6l")
    assert p.userland is not None and p.userland.architecture == "armel"
    assert p.emulation.cpu == "arm1176"


def test_schema_is_json_and_names_fields() -> None:
    schema = profile_schema()
    json.dumps(schema)
    assert {"name", "arch", "transport"} <= set(schema["properties"])


def _base() -> dict[str, Any]:
    data = yaml.safe_load((Path(__file__).parents[2] / "device_profiles" / "qemu-aarch64.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _write(tmp_path: Path, data: Any, name: str = "qemu-aarch64") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _mutations() -> list[tuple[str, Any, str]]:
    """(description, mutated document, text the error must contain): generated from a valid profile."""
    out: list[tuple[str, Any, str]] = []
    base = _base()
    for key in ("arch", "transport"):
        d = copy.deepcopy(base)
        del d[key]
        out.append((f"missing {key}", d, f"field '{key}': required field is missing"))
    enums = {"arch": "armv6l", "transport": "qemu-user", "os": "raspbian", "greengrass": "v2"}
    for key, allowed in enums.items():
        d = copy.deepcopy(base)
        d[key] = "bogus"
        out.append((f"bad {key}", d, allowed))
    d = copy.deepcopy(base)
    d["userland"]["architecture"] = "armhff"
    out.append(("bad userland arch", d, "field 'userland.architecture'"))
    d = copy.deepcopy(base)
    d["userland"]["pakages"] = ["x"]
    out.append(("typo in nested field", d, "allowed fields here: architecture, customize, mirror, packages"))
    d = copy.deepcopy(base)
    d["colour"] = "red"
    out.append(("unknown top-level field", d, "field 'colour': unknown field"))
    d = copy.deepcopy(base)
    d["resources"]["memory_mb"] = "lots"
    out.append(("memory not a number", d, "field 'resources.memory_mb'"))
    d = copy.deepcopy(base)
    d["resources"]["memory_mb"] = 1
    out.append(("memory too small", d, "greater than or equal to 16"))
    d = copy.deepcopy(base)
    d["features"] = ["ota", "teleport"]
    out.append(("unknown feature", d, "field 'features.1'"))
    d = copy.deepcopy(base)
    del d["userland"]
    out.append(("qemu-user without userland", d, "needs a 'userland' section"))
    d = copy.deepcopy(base)
    d["transport"] = "ssh"
    out.append(("ssh without ssh section", d, "needs an 'ssh' section"))
    d = copy.deepcopy(base)
    d["userland"]["packages"] = ["python3", "--force-yes"]
    out.append(("option as package", d, "is not a Debian package name"))
    d = copy.deepcopy(base)
    d["name"] = "another-name"
    out.append(("name differs from file", d, "must equal the file name"))
    out.append(("not a mapping", "- just\n- a list\n", "must be a YAML mapping"))
    out.append(("bad yaml", "name: [unclosed\n", "not valid YAML at line"))
    return out


@pytest.mark.parametrize("desc,doc,expected", _mutations(), ids=[m[0] for m in _mutations()])
def test_malformed_profile_names_file_and_field(tmp_path: Path, desc: str, doc: Any, expected: str) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(InputError) as err:
        load_profile_file(path)
    msg = str(err.value)
    assert str(path) in msg
    assert expected in msg, msg


def test_cli_reports_malformed_profile_without_traceback(tmp_path: Path) -> None:
    d = _base()
    d["arch"] = "sparc"
    path = _write(tmp_path, d)
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "exec", "--profile", str(path), "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert str(path) in res.stderr and "field 'arch'" in res.stderr and "'armv6l'" in res.stderr


def test_unknown_profile_lists_known_ones() -> None:
    with pytest.raises(InputError, match=r"known profiles: .*qemu-armv6l"):
        find_profile("no-such-board")


def test_cli_schema_prints_json() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "profiles", "--schema"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0
    assert "DeviceProfile" in json.loads(res.stdout)["title"]
