"""Cores under test behind one interface: the harness's reference core, and adapters for real cores."""

from harness.core.base import Core, CoreStatus, Endpoint

__all__ = ["Core", "CoreStatus", "Endpoint"]
