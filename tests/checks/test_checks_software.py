"""ca_trust, java, lambda_runtimes, ota_commands, pretest_commands, users and docker on scripted boards."""

from __future__ import annotations

import pytest
from fakeboard import AMAZON_ROOT_CA_1, OTHER_CA, Board, make_profile

from harness.checks import run_check
from harness.checks.trust import AMAZON_ROOT_CA_1_SHA256, certificate_fingerprints
from harness.profiles import DeviceProfile
from harness.targets.fake import reply

# -- ca_trust ------------------------------------------------------------------------------------------


def test_fingerprint_constant_matches_the_real_certificate() -> None:
    assert certificate_fingerprints(AMAZON_ROOT_CA_1) == [AMAZON_ROOT_CA_1_SHA256]


@pytest.mark.parametrize("greengrass", ["v1", "v2"])
def test_ca_trust_passes_with_amazon_root(board: Board, greengrass: str) -> None:
    res = run_check("ca_trust", board.target(), make_profile(greengrass))
    assert res.status == "passed" and "2 certificates" in res.message and "number 2" in res.message


def test_ca_trust_without_amazon_root_fails(board: Board, v2: DeviceProfile) -> None:
    board.files["/etc/ssl/certs/ca-certificates.crt"] = OTHER_CA * 3
    res = run_check("ca_trust", board.target(), v2)
    assert res.status == "failed" and "3 certificates but not Amazon Root CA 1" in res.message


def test_ca_trust_empty_bundle_fails(board: Board, v2: DeviceProfile) -> None:
    board.files["/etc/ssl/certs/ca-certificates.crt"] = ""
    res = run_check("ca_trust", board.target(), v2)
    assert res.status == "failed" and "no certificate" in res.message


def test_ca_trust_no_bundle_fails(board: Board, v2: DeviceProfile) -> None:
    del board.files["/etc/ssl/certs/ca-certificates.crt"]
    res = run_check("ca_trust", board.target(), v2)
    assert res.status == "failed" and "No system trust bundle" in res.message


def test_ca_trust_other_distribution_layout(board: Board, v2: DeviceProfile) -> None:
    del board.files["/etc/ssl/certs/ca-certificates.crt"]
    board.files["/etc/ssl/cert.pem"] = AMAZON_ROOT_CA_1
    res = run_check("ca_trust", board.target(), v2)
    assert res.status == "passed" and "/etc/ssl/cert.pem" in res.message


# -- java ----------------------------------------------------------------------------------------------

JAVA8 = 'openjdk version "1.8.0_392"\nOpenJDK Runtime Environment (build 1.8.0_392-b08)\n'
JAVA17 = 'openjdk version "17.0.9" 2023-10-17\nOpenJDK Runtime Environment (build 17.0.9+9-Debian-1deb12u1)\n'
JAVA7 = 'java version "1.7.0_80"\n'


@pytest.mark.parametrize(("text", "ok", "major"), [(JAVA8, True, 8), (JAVA17, True, 17), (JAVA7, False, 7)])
@pytest.mark.parametrize("greengrass", ["v1", "v2"])
def test_java_version(board: Board, greengrass: str, text: str, ok: bool, major: int) -> None:
    board.commands["java"] = "/usr/bin/java"
    board.java = text
    res = run_check("java", board.target(), make_profile(greengrass, features=["stream_manager"]))
    assert res.status == ("passed" if ok else "failed") and f"Java {major} found" in res.message


def test_java_missing_fails_when_claimed(board: Board) -> None:
    res = run_check("java", board.target(), make_profile("v2", features=["java"]))
    assert res.status == "failed" and "java not found on PATH" in res.message


# -- lambda runtimes ------------------------------------------------------------------------------------


def lambda_profile(*runtimes: str) -> DeviceProfile:
    return make_profile("v1", features=["lambda_runtimes"], lambda_runtimes=list(runtimes))


def test_python_runtimes_use_python3(board: Board) -> None:
    res = run_check("lambda_runtimes", board.target(), lambda_profile("python3.7", "python3.8"))
    assert res.status == "passed" and "(2 of 2)" in res.message and "Python 3.11.2" in res.message


def test_exact_python_is_preferred(board: Board) -> None:
    board.commands["python3.8"] = "/usr/local/bin/python3.8"
    board.versions["/usr/local/bin/python3.8"] = "Python 3.8.18"
    res = run_check("lambda_runtimes", board.target(), lambda_profile("python3.8"))
    assert res.status == "passed" and "/usr/local/bin/python3.8 (Python 3.8.18)" in res.message


def test_missing_python_fails(board: Board) -> None:
    del board.commands["python3"]
    res = run_check("lambda_runtimes", board.target(), lambda_profile("python3.8"))
    assert res.status == "failed" and "python3.8: none of python3.8, python3 on PATH" in res.message


def test_only_claimed_runtimes_are_checked(board: Board) -> None:
    target = board.target()
    run_check("lambda_runtimes", target, lambda_profile("python3.8"))
    assert not any("node" in " ".join(c) or "java" in " ".join(c) for c in target.calls)


def test_node_and_java_runtimes(board: Board) -> None:
    res = run_check("lambda_runtimes", board.target(), lambda_profile("nodejs12.x", "java8"))
    assert res.status == "failed" and "(2 of 2)" in res.message
    board.commands.update(node="/usr/bin/node", java="/usr/bin/java")
    board.versions["/usr/bin/node"] = "v12.22.12"
    board.java = JAVA8
    res = run_check("lambda_runtimes", board.target(), lambda_profile("nodejs12.x", "java8"))
    assert res.status == "passed" and "v12.22.12" in res.message and "Java 8" in res.message


# -- ota_commands / pretest_commands --------------------------------------------------------------------

OTA = make_profile("v1", features=["ota"])


def test_ota_commands_pass(board: Board) -> None:
    res = run_check("ota_commands", board.target(), OTA)
    assert res.status == "passed" and "All 18" in res.message


def test_busybox_symlink_counts_as_missing(board: Board) -> None:
    board.busybox = "/bin/busybox"
    board.commands["busybox"] = "/bin/busybox"
    board.links["/usr/bin/wget"] = "/bin/busybox"
    res = run_check("ota_commands", board.target(), OTA)
    assert res.status == "failed" and "wget -> /bin/busybox" in res.message and "1 of 18" in res.message


def test_busybox_hard_link_counts_as_missing(board: Board) -> None:
    board.busybox = "/bin/busybox"
    board.busybox_hardlinks = {"/usr/bin/tar"}
    res = run_check("ota_commands", board.target(), OTA)
    assert res.status == "failed" and "tar -> /usr/bin/tar" in res.message


def test_missing_bash_fails(board: Board) -> None:
    del board.commands["/bin/bash"]
    del board.commands["umount"]
    res = run_check("ota_commands", board.target(), OTA)
    assert res.status == "failed" and "missing: umount, /bin/bash" in res.message


def test_pretest_commands(board: Board, v2: DeviceProfile) -> None:
    res = run_check("pretest_commands", board.target(), v2)
    assert res.status == "passed" and "All 11" in res.message and "mkfifo" in res.evidence
    del board.commands["mkfifo"]
    del board.commands["kill"]  # a shell builtin alone is not a command on PATH
    res = run_check("pretest_commands", board.target(), v2)
    assert res.status == "failed" and "kill, mkfifo" in res.message


def test_pretest_accepts_busybox(board: Board, v2: DeviceProfile) -> None:
    board.busybox = "/bin/busybox"
    board.links["/usr/bin/ps"] = "/bin/busybox"
    assert run_check("pretest_commands", board.target(), v2).status == "passed"


# -- users ---------------------------------------------------------------------------------------------


def test_users_v1(board: Board, v1: DeviceProfile) -> None:
    target = board.target()
    assert run_check("users", target, v1).status == "passed"
    assert not any(c[0] == "sudo" for c in target.calls)  # sudo is a V2 requirement only


def test_users_missing_fail(board: Board, v1: DeviceProfile) -> None:
    board.files["/etc/group"] = "root:x:0:\n"
    res = run_check("users", board.target(), v1)
    assert res.status == "failed" and "group ggc_group is not in /etc/group" in res.message


def test_users_v2_needs_sudo_any_user_and_group(board: Board, v2: DeviceProfile) -> None:
    res = run_check("users", board.target(), v2)
    assert res.status == "passed" and "sudo" in res.message
    board.sudo = reply("User root may run the following commands on board:\n    (ALL) ALL\n")
    assert run_check("users", board.target(), v2).status == "failed"
    del board.commands["sudo"]
    res = run_check("users", board.target(), v2)
    assert res.status == "failed" and "sudo is not installed" in res.message


# -- docker --------------------------------------------------------------------------------------------


def docker_board(board: Board) -> Board:
    board.docker_dirs = {"docker": "/usr/bin/docker", "docker-compose": "/usr/local/bin/docker-compose"}
    board.commands["docker"] = "/usr/bin/docker"
    board.versions["/usr/bin/docker"] = "Docker version 20.10.24+dfsg1, build 297e128"
    board.versions["/usr/local/bin/docker-compose"] = "docker-compose version 1.25.4, build 8d51620a"
    board.files["/etc/group"] += "docker:x:998:ggc_user\n"
    return board


DOCKER_V1 = make_profile("v1", features=["docker"])


def test_docker_v1_ready(board: Board) -> None:
    res = run_check("docker", docker_board(board).target(), DOCKER_V1)
    assert res.status == "passed" and "Docker Engine 20.10.24" in res.message and "1.25.4" in res.message
    assert res.source.startswith("seed 003")


def test_docker_v1_problems_are_all_named(board: Board) -> None:
    docker_board(board)
    board.versions["/usr/bin/docker"] = "Docker version 1.9.0, build 76d6bc9"
    del board.docker_dirs["docker-compose"]
    board.files["/etc/group"] = board.files["/etc/group"].replace("docker:x:998:ggc_user", "docker:x:998:")
    board.memory_limit_kb = 150 * 1024
    res = run_check("docker", board.target(), DOCKER_V1)
    assert res.status == "failed"
    for part in ("1.9.0 is older than 1.9.1", "no docker-compose", "ggc_user is not in group 'docker'",
                 "150 MB RAM is less than the core's 128 MB plus the connector's 36 MB"):
        assert part in res.message


def test_docker_v2_needs_only_the_engine(board: Board) -> None:
    profile = make_profile("v2", features=["docker"])
    assert run_check("docker", board.target(), profile).status == "failed"
    board.commands["docker"] = "/opt/bin/docker"
    board.versions["/opt/bin/docker"] = "Docker version 24.0.5, build ced0996"
    res = run_check("docker", board.target(), profile)
    assert res.status == "passed" and "24.0.5" in res.message
