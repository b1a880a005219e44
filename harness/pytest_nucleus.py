"""pytest fixtures for the reference nucleus agent and the greengrass-cli driver (deployments, OTA)."""

from __future__ import annotations
