"""junit.xml: parses, follows the Jenkins junit-10 schema, groups by (suite, profile), carries properties."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from report_samples import EVIL, build_run, record

from harness.report import Run

# The element and attribute rules of Jenkins' junit-10.xsd (the schema CI parsers follow): allowed attributes,
# required attributes, allowed children. Encoded here because no XSD validator is a dependency.
JUNIT10: dict[str, tuple[set[str], set[str], set[str]]] = {
    "testsuites": ({"name", "time", "tests", "failures", "errors"}, set(), {"testsuite"}),
    "testsuite": (
        {"name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp", "hostname", "id"}
        | {"package", "file", "log", "url"},
        {"name", "tests", "failures", "errors"},
        {"testsuite", "properties", "testcase", "system-out", "system-err"},
    ),
    "properties": (set(), set(), {"property"}),
    "property": ({"name", "value"}, {"name", "value"}, set()),
    "testcase": (
        {"name", "time", "classname", "group"},
        {"name"},
        {"skipped", "error", "failure", "system-out", "system-err"},
    ),
    "failure": ({"type", "message"}, set(), set()),
    "error": ({"type", "message"}, set(), set()),
    "skipped": ({"type", "message"}, set(), set()),
    "system-out": (set(), set(), set()),
    "system-err": (set(), set(), set()),
}
SUREFIRE_TIME = re.compile(r"(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?")


def validate_junit10(element: ET.Element, path: str = "") -> None:
    where = f"{path}/{element.tag}"
    assert element.tag in JUNIT10, f"{where}: element not in junit-10"
    allowed, required, children = JUNIT10[element.tag]
    assert set(element.attrib) <= allowed, f"{where}: attributes {set(element.attrib) - allowed} not allowed"
    assert required <= set(element.attrib), f"{where}: missing {required - set(element.attrib)}"
    if element.tag in ("testsuites", "testsuite") and "time" in element.attrib:
        assert SUREFIRE_TIME.fullmatch(element.attrib["time"]), f"{where}: bad time {element.attrib['time']}"
    for child in element:
        assert child.tag in children, f"{where}: child {child.tag} not allowed"
        validate_junit10(child, where)


def parse(run: Run, tmp_path: Path) -> ET.Element:
    run.write(tmp_path)
    return ET.parse(tmp_path / "junit.xml").getroot()


def test_valid_junit10(sample_run: Run, tmp_path: Path) -> None:
    validate_junit10(parse(sample_run, tmp_path))


def test_one_testsuite_per_suite_and_profile(sample_run: Run, tmp_path: Path) -> None:
    root = parse(sample_run, tmp_path)
    names = sorted(s.get("name", "") for s in root.iter("testsuite"))
    assert names == ["board.qemu-aarch64", "board.rpi4", "scenario.qemu-aarch64", "scenario.rpi4"]
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        assert {c.get("classname") for c in cases} == {suite.get("name")}
        assert suite.get("tests") == str(len(cases))
    assert root.get("tests") == "13"


def test_properties_carry_profile_version_and_profile_properties(sample_run: Run, tmp_path: Path) -> None:
    root = parse(sample_run, tmp_path)
    suite = next(s for s in root.iter("testsuite") if s.get("name") == "board.rpi4")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["profile"] == "rpi4"
    assert props["harness_version"] == "0.1.0"
    assert props["run_id"] == "20260105-044501-ab12"
    assert props["rootfs_key"] == "raspios-12-arm64-91aa"
    assert props["kernel_authoritative"] == "true"
    assert props["partial"] == "true"


def test_outcomes_map_to_failure_error_skipped(sample_run: Run, tmp_path: Path) -> None:
    root = parse(sample_run, tmp_path)
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    failed = cases[("board.qemu-aarch64", "board.ota_commands")].find("failure")
    assert failed is not None and failed.get("message") == "reboot missing"
    assert failed.text is not None and "requirement: board.ota_commands" in failed.text
    assert '</pre><script>alert("pwned")</script>' in failed.text  # evidence as text, escaped by XML
    error = cases[("scenario.rpi4", "scenario.mqtt_bridge")].find("error")
    assert error is not None and "ssh timeout" in error.get("message", "")
    skipped = cases[("scenario.qemu-aarch64", "scenario.mqtt_bridge")].find("skipped")
    assert skipped is not None and skipped.get("message") == "needs network namespace"
    passed = cases[("board.rpi4", "board.arch")]
    assert [c.tag for c in passed] == ["system-out"]


def test_informative_and_optional_failures_do_not_fail_ci(sample_run: Run, tmp_path: Path) -> None:
    root = parse(sample_run, tmp_path)
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    info = cases[("board.qemu-aarch64", "board.kernel_config")]
    assert info.find("failure") is None
    skipped = info.find("skipped")
    assert skipped is not None
    assert skipped.get("message", "").startswith("informative result, not a verdict: failed")
    optional = cases[("board.rpi4", "board.tpm")].find("skipped")
    assert optional is not None and "not required" in optional.get("message", "")
    board_qemu = next(s for s in root.iter("testsuite") if s.get("name") == "board.qemu-aarch64")
    assert (board_qemu.get("failures"), board_qemu.get("skipped")) == ("1", "1")
    assert root.get("failures") == "1" and root.get("errors") == "1"


def test_console_garbage_still_parses(tmp_path: Path) -> None:
    run = build_run()
    nasty = "\x00\x07\x1b[31mred\x1b[0m\x0c\ufffe\udcff ]]> <![CDATA[ x ]]> " + EVIL
    run.add(record("board.serial", "rpi4", "failed", evidence=nasty, message="line1\nline2\x00"))
    root = parse(run, tmp_path)
    case = next(c for c in root.iter("testcase") if c.get("name") == "board.serial")
    failure = case.find("failure")
    assert failure is not None and failure.text is not None
    assert failure.get("message") == "line1"
    assert "\\x00\\x07red\\x0c\\ufffe\\udcff ]]> <![CDATA[ x ]]>" in failure.text


def test_empty_run_is_valid(tmp_path: Path) -> None:
    run = Run.start(["qemu-aarch64"])
    root = parse(run, tmp_path)
    validate_junit10(root)
    assert root.get("tests") == "0"
