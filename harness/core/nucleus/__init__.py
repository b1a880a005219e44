"""The reference core's nucleus: a Greengrass-V2-like component manager, and the host side that drives it.

``device/`` is the agent itself (stdlib only): it is copied onto the target and run by the target's own
``python3``, so on an emulated profile the component lifecycle really runs as armv6l/armv7l/aarch64 code.
``driver.NucleusDriver`` drives a nucleus only through ``greengrass-cli`` commands (``cli_adapter``), so the
same scenarios drive the reference agent or a real Greengrass V2 core over SSH.

Nothing is imported here: importing the device package on the host must not pull in host-only modules.
"""
