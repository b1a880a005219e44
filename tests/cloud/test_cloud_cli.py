"""The provision and cloud commands, plugged into a parser like the top-level CLI's."""

from __future__ import annotations

import argparse
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cloud import cli
from harness.errors import InputError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "provisioning"


def _parser() -> argparse.ArgumentParser:
    """What the top-level CLI does: a global --state and our two commands."""
    parser = argparse.ArgumentParser(prog="harness")
    parser.add_argument("--state", default=None)
    cli.add_subparsers(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(state: Path, *argv: str) -> int:
    args = _parser().parse_args(["--state", str(state), *argv])
    result: int = args.func(args)
    return result


def test_provision_export_revoke_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert (
        _run(
            state,
            "provision",
            "core",
            "Core",
            "--connectivity",
            "127.0.0.1:8883",
            "--connectivity",
            "localhost:8884",
        )
        == 0
    )
    assert (
        _run(
            state,
            "provision",
            "devices",
            "--core",
            "Core",
            "--count",
            "3",
            "--prefix",
            "d-",
            "--key-type",
            "rsa",
            "--workers",
            "1",
        )
        == 0
    )
    assert "3 succeeded, 0 failed of 3" in capsys.readouterr().out
    out = tmp_path / "export"
    assert _run(state, "cloud", "export-device", "d-0001", "--out", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cert.pem", "key.pem", "root-ca.pem"]
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    ctx = ssl.create_default_context(cafile=str(out / "root-ca.pem"))
    ctx.load_cert_chain(out / "cert.pem", out / "key.pem")  # the pair matches
    assert _run(state, "cloud", "revoke", "d-0001") == 0
    assert _run(state, "cloud", "issue-server-cert", "Core", "--days", "2") == 0
    assert (
        _run(state, "provision", "template", "add", str(FIXTURES / "client-device-own-certificate.json")) == 0
    )
    assert _run(state, "provision", "component-template", "add", "cli", "aws.greengrass.Cli=2.5.0") == 0
    assert _run(state, "provision", "deploy", "cli@1", "--core", "Core") == 0
    assert _run(state, "cloud", "client-policy", "Core", str(FIXTURES / "client-device-policy.json")) == 0
    assert _run(state, "cloud", "check") == 0
    capsys.readouterr()
    assert _run(state, "provision", "fleet-summary") == 0
    assert '"desiredInUse": 1' in capsys.readouterr().out


def test_errors_are_input_errors(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with pytest.raises(InputError, match="no core named 'Nope'"):
        _run(state, "provision", "devices", "--core", "Nope", "--count", "1", "--prefix", "x")
    with pytest.raises(InputError, match=r"connectivity\[0\]: expected HOST:PORT"):
        _run(state, "provision", "core", "C", "--connectivity", "nohost")
    with pytest.raises(InputError, match=r"bad-cdf-option\.json: CDF\.createDeviceCertficate: unknown field"):
        _run(state, "provision", "template", "add", str(FIXTURES / "bad-cdf-option.json"))
    assert _run(state, "provision") == 2  # no subcommand: usage, status 2


def test_standalone_main_exit_status(tmp_path: Path) -> None:
    assert (
        cli.main(["--state", str(tmp_path / "s"), "cloud", "export-device", "ghost", "--out", str(tmp_path)])
        == 2
    )


def test_serve_until_sigterm(tmp_path: Path) -> None:
    state, port_file = tmp_path / "state", tmp_path / "port"
    assert cli.main(["--state", str(state), "provision", "core", "Core"]) == 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cloud.cli",
            "--state",
            str(state),
            "cloud",
            "serve",
            "--port",
            "0",
            "--port-file",
            str(port_file),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert port_file.exists(), proc.stderr.read() if proc.stderr else ""
        port = int(port_file.read_text())
        assert port > 0
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0
    assert f"listening on https://127.0.0.1:{port}" in stdout and "stopped" in stdout
