"""Build the target a profile describes: the only place that maps a transport name to a class."""

from __future__ import annotations

from harness.profiles import DeviceProfile
from harness.targets.base import Target


def make_target(profile: DeviceProfile, instance: str | None = None) -> Target:
    if profile.transport == "qemu-user":
        from harness.targets.qemu_user import QemuUserTarget

        return QemuUserTarget(profile, instance=instance)
    if profile.transport == "qemu-system":
        from harness.targets.qemu_system import QemuSystemTarget

        return QemuSystemTarget(profile, instance=instance)
    if profile.transport == "ssh":
        from harness.targets.ssh import SshTarget

        return SshTarget(profile)
    from harness.targets.local import LocalTarget

    return LocalTarget(profile)
