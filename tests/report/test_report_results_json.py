"""results.json: the spec's minimum fields, counts, the committed JSON Schema and the round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from report_samples import LOAD, build_run, record

from harness.errors import InputError
from harness.report import Run
from harness.report.results_json import SCHEMA_PATH, Results, render_schema

SPEC_TOP = {"run_id", "harness_version", "started", "finished", "partial", "profiles", "summary", "tests"}
SPEC_TEST = {
    "id", "suite", "profile", "outcome", "duration_s", "requirement", "source", "evidence", "informative",
    "log",
}  # fmt: skip
SPEC_LOAD = {
    "devices", "connected", "failed", "published", "received", "lost", "duplicates", "throughput_msg_s",
    "latency_ms", "connect_ms", "generator",
}  # fmt: skip
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def check(schema: dict[str, Any], value: Any, root: dict[str, Any], where: str = "$") -> None:
    """A deliberately small JSON Schema check ($ref, type, const, enum, anyOf, required, properties, items).

    jsonschema is not a dependency; this covers every keyword results.schema.json uses.
    """
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                check(option, value, root, where)
                break
            except AssertionError as exc:
                errors.append(str(exc))
        else:
            raise AssertionError(f"{where}: matches no anyOf option: {errors}")
    if "type" in schema:
        kinds = JSON_TYPES[schema["type"]]
        is_bool = isinstance(value, bool)
        assert isinstance(value, kinds) and (schema["type"] == "boolean" or not is_bool), (
            f"{where}: expected {schema['type']}, got {value!r}"
        )
    if "const" in schema:
        assert value == schema["const"], f"{where}: expected {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing required {key!r}"
        for key, item in value.items():
            if key in schema.get("properties", {}):
                check(schema["properties"][key], item, root, f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                check(schema["additionalProperties"], item, root, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(schema["items"], item, root, f"{where}[{i}]")


def written(run: Run, tmp_path: Path) -> dict[str, Any]:
    run.write(tmp_path)
    data: dict[str, Any] = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    return data


def test_has_the_spec_fields_and_counts(sample_run: Run, tmp_path: Path) -> None:
    data = written(sample_run, tmp_path)
    assert data.keys() >= SPEC_TOP | {"schema_version", "profile_properties"}
    assert data["schema_version"] == 1
    assert data["profiles"] == ["qemu-aarch64", "rpi4"]
    assert data["summary"] == {"passed": 8, "failed": 3, "skipped": 1, "error": 1, "total": 13}
    rpi4 = {"rootfs_key": "raspios-12-arm64-91aa", "kernel_authoritative": True}
    assert data["profile_properties"]["rpi4"] == rpi4
    assert all(t.keys() >= SPEC_TEST for t in data["tests"])
    assert data["started"] == "2026-01-05T04:45:01Z"
    assert "load" not in data  # present only for load runs


def test_load_block_is_written_for_load_runs(load_run: Run, tmp_path: Path) -> None:
    data = written(load_run, tmp_path)
    assert data["load"].keys() >= SPEC_LOAD
    assert data["load"]["connect_ms"]["p99"] is None  # no sample is null, never a made-up 0


def test_output_matches_committed_schema(load_run: Run, tmp_path: Path) -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    data = written(load_run, tmp_path)
    check(schema, data, schema)
    Results.model_validate(data)


def test_checker_rejects_a_broken_document(sample_run: Run, tmp_path: Path) -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    data = written(sample_run, tmp_path)
    del data["tests"][0]["outcome"]
    with pytest.raises(AssertionError, match=r"tests\[0\]: missing required 'outcome'"):
        check(schema, data, schema)
    data = written(sample_run, tmp_path)
    data["tests"][1]["outcome"] = "flaky"
    with pytest.raises(AssertionError, match="flaky"):
        check(schema, data, schema)


def test_committed_schema_is_up_to_date() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(), (
        "results.schema.json is stale: run "
        "python -c 'from harness.report.results_json import write_schema; write_schema()'"
    )


def test_full_json_schema_validation_when_available(load_run: Run, tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="optional; the small checker above covers CI")
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(written(load_run, tmp_path))


def test_round_trip(load_run: Run, tmp_path: Path) -> None:
    load_run.finish(now=load_run.started.replace(hour=5))
    load_run.write(tmp_path)
    back = Run.read(tmp_path)
    assert back == load_run
    assert Run.read(tmp_path / "results.json") == load_run


def test_surrogates_and_control_characters_survive(tmp_path: Path) -> None:
    run = build_run()
    run.add(record("board.serial", "rpi4", "failed", evidence="boot\udcff\x00\x1b[1mdone\r\n"))
    data = written(run, tmp_path)
    evidence = data["tests"][-1]["evidence"]
    assert evidence == "boot\\udcff\x00\x1b[1mdone\r\n"  # JSON keeps raw output; only surrogates are escaped


def test_read_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    run = build_run()
    run.write(tmp_path)
    data = json.loads(bad.read_text(encoding="utf-8"))
    data["tests"][2]["outcome"] = "maybe"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError, match=r"results\.json: tests\.2\.outcome"):
        Run.read(tmp_path)
    with pytest.raises(InputError, match="cannot read"):
        Run.read(tmp_path / "missing")


def test_load_block_is_validated(tmp_path: Path) -> None:
    run = build_run()
    run.load = {k: v for k, v in LOAD.items() if k != "lost"}
    with pytest.raises(ValueError, match="lost"):
        run.write(tmp_path)
