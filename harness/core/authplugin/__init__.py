"""Greengrass client-device authorization for the reference core's mosquitto broker.

Mosquitto alone cannot refuse a client whose id is not its certificate's thing name, nor evaluate
device-group policies; the gg_auth plugin (gg_auth.c) does, from a rules file that ``rules`` compiles from
the deviceGroups policy. ``build`` cross-compiles the plugin for the target's architecture, ``broker`` holds
the configuration lines it needs and parses the decisions it logs.
"""

from __future__ import annotations

from harness.core.authplugin.broker import FAULTS, Decision, parse_decisions, plugin_conf_lines
from harness.core.authplugin.build import apt_packages, plugin_path
from harness.core.authplugin.rules import DeviceGroupPolicy, compile_policy, compile_rules, load_policy

__all__ = [
    "FAULTS",
    "Decision",
    "DeviceGroupPolicy",
    "apt_packages",
    "compile_policy",
    "compile_rules",
    "load_policy",
    "parse_decisions",
    "plugin_conf_lines",
    "plugin_path",
]
