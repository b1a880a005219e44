"""Real, unmodified clients work against the reference core: mosquitto_pub/mosquitto_sub from Debian."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cloud.api import Cloud
from harness.core.reference import ReferenceCore
from harness.profiles import find_profile
from harness.pytest_core import Fleet, provision_fleet
from harness.targets.qemu_user import QemuUserTarget

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients not installed"),
]


@pytest.fixture(scope="module")
def running_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cloud, ReferenceCore, Fleet]]:
    cloud = Cloud(tmp_path_factory.mktemp("state"))
    target = QemuUserTarget(find_profile("qemu-aarch64"))
    core = None
    try:
        target.power_on()
        fleet = provision_fleet(cloud, "core-cli")
        core = ReferenceCore(target, target.profile, cloud, "core-cli")
        core.start()
        yield cloud, core, fleet
    finally:
        if core is not None:
            core.close()
        target.close()
        cloud.close()


def _tls_args(cloud: Cloud, core: ReferenceCore, thing: str, ca: Path) -> list[str]:
    files = cloud.device_files(thing)
    ep = core.endpoints()[0]
    return [
        "-h",
        ep.host,
        "-p",
        str(ep.port),
        "--cafile",
        str(ca),
        "--cert",
        str(files.cert_path),
        "--key",
        str(files.key_path),
        "-i",
        thing,
        "-V",
        "mqttv311",
        "--insecure",
    ]


def test_mosquitto_pub_and_sub_relay_through_an_emulated_core(
    running_core: tuple[Cloud, ReferenceCore, Fleet], tmp_path: Path
) -> None:
    cloud, core, fleet = running_core
    ca = tmp_path / "core-ca.pem"
    ca.write_text(cloud.core_ca(core.name).pem)
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            *_tls_args(cloud, core, fleet.sensors[0], ca),
            "-t",
            "relay/#",
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while "relay/#" not in core.logs() and time.monotonic() < deadline:  # the SUBSCRIBE is logged
            time.sleep(0.2)
        pub = subprocess.run(
            [
                "mosquitto_pub",
                *_tls_args(cloud, core, fleet.sensors[1], ca),
                "-t",
                "relay/cli",
                "-q",
                "1",
                "-m",
                "hello from mosquitto_pub",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert pub.returncode == 0, pub.stderr
        out, err = sub.communicate(timeout=60)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait(timeout=10)
    assert sub.returncode == 0, err
    assert out.strip() == "hello from mosquitto_pub"


def test_mosquitto_pub_with_another_things_id_is_refused(
    running_core: tuple[Cloud, ReferenceCore, Fleet], tmp_path: Path
) -> None:
    cloud, core, fleet = running_core
    ca = tmp_path / "core-ca.pem"
    ca.write_text(cloud.core_ca(core.name).pem)
    args = _tls_args(cloud, core, fleet.sensors[0], ca)
    args[args.index("-i") + 1] = fleet.sensors[1]
    pub = subprocess.run(
        ["mosquitto_pub", *args, "-t", "relay/cli", "-m", "x"], capture_output=True, text=True, timeout=60
    )
    assert pub.returncode != 0
    assert "not authorised" in (pub.stderr + pub.stdout).lower()
