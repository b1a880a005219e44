"""The reference core: Debian's mosquitto from the target's own userland, configured like a Greengrass core.

The broker runs inside the target, so on an emulated profile it is armel/armhf/arm64 code. What mosquitto
cannot do alone (refuse a client id that is not the certificate's thing name, evaluate device-group
policies) is done by the harness's broker plugin (``harness.core.authplugin``), cross-compiled for the
target's architecture: part of the reference core, like Greengrass's own client-device-auth component.
Fault flags turn single behaviours off, so every scenario can be shown to fail on a seeded defect.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from harness.cloud.api import Cloud
from harness.core.base import Core, CoreStatus, Endpoint, free_port, wait_port
from harness.errors import InputError, TargetError
from harness.profiles import DeviceProfile
from harness.targets.base import Target

VERSION = "2.0.0-reference"
#: Seeded defects of the reference core, each disabling one behaviour a scenario checks.
FAULTS: dict[str, str] = {
    "client_cert_optional": "the broker accepts clients without a certificate (M1)",
    "client_id_unchecked": "a client id different from the certificate's thing name is accepted (M2)",
    "acl_off": "device-group policies are not applied; every publish and subscribe is allowed (M3)",
    "oversize_accepted": "messages above 128 KiB are accepted (M5)",
    "rotation_without_restart": "certificate rotation reloads the certificate without a restart (M6)",
    "qos1_dropped": "the broker caps delivery at QoS 0, so QoS 1 messages may be lost (M4)",
    "connectivity_stale": "a connectivity change is not registered with the cloud side (D4)",
    "server_cert_foreign_ca": "the broker certificate is not from the core CA discovery hands out (D1, D2)",
}
MAX_MESSAGE_BYTES = 128 * 1024
START_TIMEOUT_S = 90.0


def check_faults(faults: Iterable[str]) -> frozenset[str]:
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise InputError(
            f"unknown reference-core fault(s) {', '.join(unknown)}; allowed: {', '.join(FAULTS)}"
        )
    return frozenset(faults)


class ReferenceCore(Core):
    """mosquitto + the auth plugin on a target, provisioned in the offline cloud as ``name``."""

    def __init__(
        self,
        target: Target,
        profile: DeviceProfile,
        cloud: Cloud,
        name: str,
        *,
        faults: Iterable[str] = (),
        port: int | None = None,
        host: str = "127.0.0.1",
        cert_days: float = 7,
    ) -> None:
        self.target = target
        self.profile = profile
        self.cloud = cloud
        self.name = name
        self.faults = check_faults(faults)
        self.host = host
        self.port = port or free_port(host)
        self.cert_days = cert_days
        self.root = profile.install_root.rstrip("/") or "/greengrass"
        self._installed = False

    # -- paths on the target ----------------------------------------------------------------------
    def _p(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    @property
    def conf(self) -> str:
        return self._p("config/mosquitto.conf")

    @property
    def pidfile(self) -> str:
        return self._p("run/broker.pid")

    # -- install ----------------------------------------------------------------------------------
    def install(self) -> None:
        from harness.core.authplugin.build import plugin_path
        from harness.core.authplugin.rules import compile_rules

        if self.profile.userland is None:
            raise TargetError(f"{self.profile.name}: the reference core needs a Debian userland (mosquitto)")
        self.register_connectivity()
        self._put_server_cert()
        self.target.put(self.cloud.root_ca_path, self._p("certs/client-ca.pem"), mode=0o644)
        self.target.put(
            plugin_path(self.profile.userland.architecture), self._p("plugins/gg_auth.so"), mode=0o755
        )
        policy = self.cloud.client_policy(self.name)
        rules = compile_rules(policy.document if policy is not None else _deny_all())
        self._put_text(self._p("config/gg_auth.rules"), rules, 0o644)
        self._put_text(self.conf, self._mosquitto_conf(), 0o644)
        dirs = " ".join(self._p(d) for d in ("logs", "run", "certs"))
        res = self.target.run(["sh", "-c", f"mkdir -p {dirs} && chown -R mosquitto {dirs}"], timeout=60)
        if not res.ok:
            raise TargetError(
                f"{self.profile.name}: preparing the core's directories failed:\n{res.evidence()}"
            )
        self._installed = True

    def _put_text(self, remote: str, text: str, mode: int) -> None:
        with tempfile.NamedTemporaryFile("w", delete=False) as fh:
            fh.write(text)
        try:
            self.target.put(Path(fh.name), remote, mode=mode)
        finally:
            Path(fh.name).unlink()

    def _put_server_cert(self) -> None:
        if "server_cert_foreign_ca" in self.faults:
            cert, key = self._foreign_server_cert()
        else:
            cert, key = self.cloud.issue_server_cert(self.name, days=self.cert_days)
        self.target.put(cert, self._p("certs/server.pem"), mode=0o644)
        self.target.put(key, self._p("certs/server.key"), mode=0o600)
        if "server_cert_foreign_ca" in self.faults:
            shutil.rmtree(cert.parent, ignore_errors=True)

    def _mosquitto_conf(self) -> str:
        f = self.faults
        lines = [
            "# generated by gg-harness: the reference core's broker, configured like a Greengrass core",
            "per_listener_settings false",
            "persistence false",
            f"pid_file {self.pidfile}",
            f"log_dest file {self._p('logs/broker.log')}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "max_inflight_messages 10",
            "set_tcp_nodelay true",
            f"listener {self.port} {self.host}",
            "protocol mqtt",
            f"cafile {self._p('certs/client-ca.pem')}",
            f"certfile {self._p('certs/server.pem')}",
            f"keyfile {self._p('certs/server.key')}",
            "tls_version tlsv1.2",
            f"require_certificate {'false' if 'client_cert_optional' in f else 'true'}",
            "allow_anonymous false",
            f"plugin {self._p('plugins/gg_auth.so')}",
            f"plugin_opt_rules {self._p('config/gg_auth.rules')}",
        ]
        plugin_faults = [
            n
            for flag, n in (
                ("client_id_unchecked", "no_client_id_check"),
                ("acl_off", "no_acl"),
                ("client_cert_optional", "allow_no_certificate"),
            )
            if flag in f
        ]
        if plugin_faults:
            lines.append(f"plugin_opt_faults {','.join(plugin_faults)}")
        if "oversize_accepted" not in f:
            lines.append(f"message_size_limit {MAX_MESSAGE_BYTES}")
        if "qos1_dropped" in f:
            lines.append("max_qos 0")
        return "\n".join(lines) + "\n"

    def _foreign_server_cert(self) -> tuple[Path, Path]:
        from harness.cloud.ca import CertificateAuthority, CertInfo, cert_to_pem, key_to_pem

        ca = CertificateAuthority.create("not the core CA")
        key, cert = ca.issue_key_and_cert(
            CertInfo(common_name=f"{self.name} broker").subject(),
            key_type="ec",
            days=self.cert_days,
            usage="server",
            sans=["localhost", self.host],
        )
        d = Path(tempfile.mkdtemp(prefix="foreign-cert-"))
        (d / "server.key").touch(mode=0o600)
        (d / "server.key").write_bytes(key_to_pem(key))
        (d / "server.pem").write_bytes(cert_to_pem(cert))
        return d / "server.pem", d / "server.key"

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if not self._installed:
            self.install()
        # the broker may hold thousands of client connections: lift its soft open-file limit to the hard one
        start = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec mosquitto -c "$1" -d'
        res = self.target.run(["sh", "-c", start, "sh", self.conf], timeout=60)
        if not res.ok:
            raise TargetError(
                f"{self.name}: the broker did not start:\n{res.evidence()}\n{self.logs()[-2000:]}"
            )
        from harness.core.authplugin.broker import startup_status

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                wait_port(self.host, self.port, 1.0, what=f"core {self.name} broker")
                return
            except TargetError as exc:
                state, errors = startup_status(self.logs())
                if state == "failed":  # `mosquitto -d` exits 0 even when the broker then fails: read its log
                    raise TargetError(f"{self.name}: the broker failed to start:\n{errors}") from None
                if time.monotonic() > deadline:
                    raise TargetError(f"{exc}\nbroker log:\n{self.logs()[-2000:]}") from None

    def _broker_pid(self) -> str | None:
        text = self.target.read_text(self.pidfile)
        return text.strip() if text and text.strip() else None

    def stop(self) -> None:
        if not self.target.is_on:
            return
        pid = self._broker_pid()
        if pid:
            self.target.run(["kill", "-TERM", pid], timeout=30)
        wait_port(self.host, self.port, 30, open_=False, what=f"core {self.name} broker")
        deadline = time.monotonic() + 15
        while self._broker_pid() and self.target.run(["kill", "-0", self._broker_pid() or "0"]).ok:
            if time.monotonic() > deadline:
                raise TargetError(f"{self.name}: the broker did not exit after SIGTERM")
            time.sleep(0.1)

    def status(self) -> CoreStatus:
        pid = self._broker_pid() if self.target.is_on else None
        running = bool(pid) and self.target.run(["kill", "-0", pid or "0"], timeout=30).ok
        return CoreStatus(
            running=running, version=VERSION, detail={"broker_pid": pid or "", "port": str(self.port)}
        )

    def logs(self) -> str:
        if not self.target.is_on:
            return ""
        return self.target.read_text(self._p("logs/broker.log")) or ""

    def rotate_certificate(self) -> None:
        self._put_server_cert()
        if "rotation_without_restart" in self.faults:
            pid = self._broker_pid()
            if pid:
                self.target.run(["kill", "-HUP", pid], timeout=30)
            return
        self.stop()
        self.start()

    def power_cut(self) -> None:
        self.target.power_cut()
        self.target.power_on()

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint(self.host, self.port)]

    def register_connectivity(self) -> None:
        self.cloud.set_connectivity(
            self.name,
            [
                {
                    "HostAddress": self.host,
                    "PortNumber": self.port,
                    "Metadata": "",
                    "Id": f"{self.host}_{self.port}",
                }
            ],
        )

    def move(self, port: int | None = None) -> Endpoint:
        """Connectivity change: the broker restarts on a new port and the cloud side learns the new entry."""
        self.stop()
        self.port = port or free_port(self.host)
        if "connectivity_stale" not in self.faults:
            self.register_connectivity()
        self._put_server_cert()
        self._put_text(self.conf, self._mosquitto_conf(), 0o644)
        self.start()
        return Endpoint(self.host, self.port)

    def close(self) -> None:
        try:
            self.stop()
        except TargetError:
            pass


def _deny_all() -> dict[str, object]:
    return {"deviceGroups": {"formatVersion": "2021-03-05", "definitions": {}, "policies": {}}}
