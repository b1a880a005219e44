"""pytest fixtures for the Docker application deployment connector (scenarios/docker)."""

from __future__ import annotations
