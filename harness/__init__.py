"""Offline conformance and simulation harness for Greengrass-style edge cores."""

__version__ = "0.1.0"
