"""The core's cloud link: a cloud-side MQTT endpoint (the IoT Core stand-in) and a reference core bridged
to it.

A Greengrass core relays between its local devices and AWS IoT Core over mutual TLS; here the cloud end is
the host's mosquitto bound to the cloud link's root-namespace address (reachable from the core's namespace
and the host, nothing else), requiring a client certificate from the harness's root CA, and the core's broker
gets a mosquitto bridge that connects to it with the core's own thing certificate. Local devices' ``relay/#``
traffic goes up the bridge; ``cloud/down/#`` comes down. Cutting the cloud link then shows whether the core
keeps serving its local devices without the cloud.

``NET_FAULTS`` are seeded defects of the core's network behaviour (checked by scenarios/network).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from harness.cloud.api import Cloud
from harness.cloud.ca import CertificateAuthority, CertInfo, cert_to_pem, key_to_pem
from harness.core.base import wait_port
from harness.core.reference import ReferenceCore
from harness.errors import InfraError, InputError, TargetError
from harness.profiles import DeviceProfile
from harness.targets.base import Target

NET_FAULTS: dict[str, str] = {
    "local_stalls_without_cloud": "the core stops serving local devices while its cloud link is down (N3)",
    "offline_queue_off": "the core keeps (almost) no queue for offline persistent sessions (N2)",
}
CLOUD_PORT = 8883
BROKER_PORT = 8883
UP_TOPICS = "relay/#"
DOWN_TOPICS = "cloud/down/#"
BRIDGE = "cloud"

#: Runs on the target with its own python3: the seeded defect's supervisor. It probes the cloud endpoint
#: and freezes the broker (SIGSTOP) while the cloud is unreachable, as a core that gates local traffic on
#: its cloud connection would.
_STALL_SUPERVISOR = """
import os, signal, socket, sys, time
host, port, pidfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
stopped = False
while True:
    try:
        socket.create_connection((host, port), timeout=1).close()
        up = True
    except OSError:
        up = False
    try:
        pid = int(open(pidfile).read())
    except (OSError, ValueError):
        time.sleep(0.5)
        continue
    if not up and not stopped:
        os.kill(pid, signal.SIGSTOP)
        stopped = True
    elif up and stopped:
        os.kill(pid, signal.SIGCONT)
        stopped = False
    time.sleep(0.3)
"""


def check_net_faults(faults: Iterable[str]) -> frozenset[str]:
    unknown = sorted(set(faults) - set(NET_FAULTS))
    if unknown:
        raise InputError(f"unknown network fault(s) {', '.join(unknown)}; allowed: {', '.join(NET_FAULTS)}")
    return frozenset(faults)


class CloudBroker:
    """The cloud-side MQTT endpoint: the host's mosquitto, mutual TLS, bound to one harness address."""

    def __init__(self, cloud: Cloud, host: str, port: int = CLOUD_PORT) -> None:
        self.cloud = cloud
        self.host = host
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="cloud-broker-", dir="/var/tmp"))
        self.ca = CertificateAuthority.create("gg-harness offline IoT endpoint CA")
        self.ca_path = self.dir / "endpoint-ca.pem"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        key, cert = self.ca.issue_key_and_cert(
            CertInfo(common_name="iot-endpoint").subject(),
            key_type="ec",
            days=2,
            usage="server",
            sans=[self.host],
        )
        self.ca_path.write_bytes(cert_to_pem(self.ca.cert))
        (self.dir / "server.pem").write_bytes(cert_to_pem(cert))
        key_file = self.dir / "server.key"
        key_file.touch(mode=0o600)
        key_file.write_bytes(key_to_pem(key))
        shutil.copyfile(self.cloud.root_ca_path, self.dir / "client-ca.pem")
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    "# gg-harness: the offline cloud's MQTT endpoint (stands in for AWS IoT Core)",
                    "persistence false",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "per_listener_settings false",
                    f"listener {self.port} {self.host}",
                    f"cafile {self.dir / 'client-ca.pem'}",
                    f"certfile {self.dir / 'server.pem'}",
                    f"keyfile {key_file}",
                    "tls_version tlsv1.2",
                    "require_certificate true",
                    "use_identity_as_username true",
                    "allow_anonymous false",
                    "",
                ]
            )
        )
        shutil.chown(self.dir, "mosquitto")
        for f in self.dir.iterdir():
            shutil.chown(f, "mosquitto")
        self.log = (self.dir / "broker.log").open("ab")
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL
        )
        try:
            wait_port(self.host, self.port, 20, what="the cloud MQTT endpoint")
        except TargetError as exc:
            self.stop()
            raise InfraError(str(exc)) from None

    def logs(self) -> str:
        return (self.dir / "broker.log").read_text(errors="replace") if self.dir.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class CloudLinkedCore(ReferenceCore):
    """The reference core in a network namespace, listening on all of it, bridged to the cloud endpoint.

    ``extra_hosts`` are further addresses of the core (registered as connectivity, so on the certificate).
    """

    def __init__(
        self,
        target: Target,
        profile: DeviceProfile,
        cloud: Cloud,
        name: str,
        *,
        cloud_broker: CloudBroker,
        host: str,
        extra_hosts: Iterable[str] = (),
        faults: Iterable[str] = (),
        net_faults: Iterable[str] = (),
        port: int = BROKER_PORT,
    ) -> None:
        super().__init__(target, profile, cloud, name, faults=faults, port=port, host=host)
        self.cloud_broker = cloud_broker
        self.extra_hosts = list(extra_hosts)
        self.net_faults = check_net_faults(net_faults)
        self._supervisor_pid = ""

    def register_connectivity(self) -> None:
        self.cloud.set_connectivity(
            self.name,
            [
                {"HostAddress": h, "PortNumber": self.port, "Metadata": "", "Id": f"{h}_{self.port}"}
                for h in [self.host, *self.extra_hosts]
            ],
        )

    def install(self) -> None:
        super().install()
        files = self.cloud.device_files(self.name)  # the core's own thing certificate
        self.target.put(self.cloud_broker.ca_path, self._p("certs/endpoint-ca.pem"), mode=0o644)
        self.target.put(files.cert_path, self._p("certs/core.pem"), mode=0o644)
        self.target.put(files.key_path, self._p("certs/core.key"), mode=0o600)
        res = self.target.run(["chown", "mosquitto", self._p("certs/core.key")], timeout=30)
        if not res.ok:
            raise TargetError(f"{self.name}: chown of the core key failed:\n{res.evidence()}")

    def _mosquitto_conf(self) -> str:
        conf = (
            super()
            ._mosquitto_conf()
            .replace(f"listener {self.port} {self.host}\n", f"listener {self.port}\n")
        )
        if "offline_queue_off" in self.net_faults:
            conf += "max_queued_messages 1\n"
        b = self.cloud_broker
        return conf + "\n".join(
            [
                f"connection {BRIDGE}",
                f"address {b.host}:{b.port}",
                "bridge_protocol_version mqttv311",
                f"remote_clientid {self.name}",
                f"bridge_cafile {self._p('certs/endpoint-ca.pem')}",
                f"bridge_certfile {self._p('certs/core.pem')}",
                f"bridge_keyfile {self._p('certs/core.key')}",
                "bridge_insecure false",
                "cleansession false",
                "keepalive_interval 5",
                "restart_timeout 1 4",
                "notifications false",
                "try_private false",
                f"topic {UP_TOPICS} out 1",
                f"topic {DOWN_TOPICS} in 1",
                "",
            ]
        )

    def start(self) -> None:
        super().start()
        if "local_stalls_without_cloud" in self.net_faults:
            b = self.cloud_broker
            script = self._p("run/stall_supervisor.py")
            self._put_text(script, _STALL_SUPERVISOR, 0o644)
            cmd = 'nohup python3 "$1" "$2" "$3" "$4" >/dev/null 2>&1 & echo $!'
            res = self.target.run(
                ["sh", "-c", cmd, "sh", script, b.host, str(b.port), self.pidfile], timeout=30
            )
            if not res.ok or not res.stdout.strip().isdigit():
                raise TargetError(f"{self.name}: the fault supervisor did not start:\n{res.evidence()}")
            self._supervisor_pid = res.stdout.strip()

    def stop(self) -> None:
        if self.target.is_on and "local_stalls_without_cloud" in self.net_faults:
            if self._supervisor_pid:
                self.target.run(["kill", "-TERM", self._supervisor_pid], timeout=30)
                self._supervisor_pid = ""
            pid = self._broker_pid()
            if pid:
                self.target.run(["kill", "-CONT", pid], timeout=30)
        super().stop()
