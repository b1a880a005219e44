"""FakeTarget: canned answers by argv, handlers, files, facts; never a process."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import CommandTimeout, TargetError
from harness.targets.base import Facts
from harness.targets.fake import FakeTarget, reply


def test_exact_argv_answers_first() -> None:
    t = FakeTarget(responses={("uname", "-m"): reply("armv7l\n")}, handlers=[lambda argv: reply("handler")])
    res = t.run(["uname", "-m"])
    assert res.stdout == "armv7l\n" and res.argv == ["uname", "-m"] and res.ok
    assert t.run(["uname", "-r"]).stdout == "handler"
    assert t.calls == [["uname", "-m"], ["uname", "-r"]]


def test_callable_response_and_fallthrough() -> None:
    t = FakeTarget(responses={("x",): lambda argv: None}, handlers=[lambda argv: reply(" ".join(argv))])
    assert t.run(["x"]).stdout == "x"


def test_unknown_command_exits_127() -> None:
    res = FakeTarget().run(["java", "-version"])
    assert res.exit_status == 127 and "not found" in res.stderr


def test_exceptions_are_raised() -> None:
    t = FakeTarget(responses={("sleep", "9"): CommandTimeout(["sleep", "9"], 1.0, "", "")})
    with pytest.raises(CommandTimeout):
        t.run(["sleep", "9"])


def test_files_are_read_and_served_by_cat(tmp_path: Path) -> None:
    t = FakeTarget(files={"/etc/hostname": "board\n"})
    assert t.read_text("/etc/hostname") == "board\n" and t.read_text("/nope") is None
    assert t.run(["cat", "/etc/hostname"]).stdout == "board\n"
    assert t.run(["cat", "/nope"]).exit_status == 1
    assert t.reads == ["/etc/hostname", "/nope"]
    src = tmp_path / "f"
    src.write_text("data")
    t.put(src, "/tmp/f")
    t.get("/tmp/f", tmp_path / "g")
    assert (tmp_path / "g").read_text() == "data"


def test_check_flag_and_power() -> None:
    t = FakeTarget(responses={("false",): reply(exit_status=1)})
    with pytest.raises(TargetError):
        t.run(["false"], check=True)
    t.power_cut()
    assert not t.is_on
    with pytest.raises(TargetError, match="powered off"):
        t.run(["true"])
    t.power_on()
    assert t.is_on


def test_facts_and_no_processes() -> None:
    facts = Facts("aarch64", "5.15.0", "glibc 2.31", 1024, memory_limit_kb=512, kernel_is_host=True)
    t = FakeTarget(facts=facts, kernel_is_host=True)
    assert t.facts() is facts and t.memory_limit_kb() == 512 and t.kernel_is_host
    with pytest.raises(TargetError, match="starts no processes"):
        t.popen(["true"])
