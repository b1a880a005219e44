"""The offline cloud side: CA and certificates, registry, provisioning (seed 001), discovery endpoint.

Start from :class:`harness.cloud.api.Cloud`; the CLI commands live in :mod:`harness.cloud.cli`.
"""

from __future__ import annotations

from harness.cloud.api import Cloud, ConsistencyReport, CoreCA, DeviceFiles
from harness.cloud.discovery import DiscoveryServer
from harness.cloud.policy import DeviceGroupPolicy
from harness.cloud.registry import ConnectivityInfo

__all__ = [
    "Cloud",
    "ConnectivityInfo",
    "ConsistencyReport",
    "CoreCA",
    "DeviceFiles",
    "DeviceGroupPolicy",
    "DiscoveryServer",
]
