"""Fixtures for gg_auth broker tests: one target per module, a throwaway PKI, brokers stopped after a test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ggauth_support import POLICY_DOC, Broker, BrokerFactory, Pki, Probe, ProbeFactory

from harness.core.authplugin import compile_policy
from harness.core.authplugin.rules import DeviceGroupPolicy
from harness.profiles import find_profile
from harness.targets.qemu_user import QemuUserTarget


@pytest.fixture(scope="module")
def policy() -> DeviceGroupPolicy:
    return compile_policy(POLICY_DOC, "tests/authplugin POLICY_DOC")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def native_target() -> Iterator[QemuUserTarget]:
    """One native x86_64 target for the module: brokers come and go, the target stays (tbot style)."""
    target = QemuUserTarget(find_profile("native-x86_64"), instance="gg-auth")
    try:
        target.power_on()
        yield target
    finally:
        target.close()


@pytest.fixture
def make_broker(native_target: QemuUserTarget, pki: Pki,
                policy: DeviceGroupPolicy) -> Iterator[BrokerFactory]:
    """Start a broker (own directory and port) with the test policy, or the given policy/rules text."""
    made: list[Broker] = []

    def make(policy_or_rules: DeviceGroupPolicy | str | None = None, *, start: bool = True,
             **kwargs: Any) -> Broker:
        broker = Broker(native_target, pki, policy if policy_or_rules is None else policy_or_rules, **kwargs)
        made.append(broker)
        return broker.start() if start else broker

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture
def probe(make_broker: BrokerFactory) -> Iterator[ProbeFactory]:
    """MQTT clients for a test, disconnected (and their network threads stopped) afterwards."""
    made: list[Probe] = []

    def make(broker: Broker, thing: str, client_id: str | None = None) -> Probe:
        p = Probe(broker, thing, client_id)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
