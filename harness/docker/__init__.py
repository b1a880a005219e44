"""The Docker application deployment connector of seed 003 and the container engine it drives.

The engine is this machine's podman (runc, a private store and network namespace per engine), running
images built from the profile's own root file system, so an emulated profile's containers run that
architecture's code through binfmt. The connector publishes its status through the core's broker.
"""
