"""The nucleus agent that runs on the target (shipped there as the package ``ggnucleus``).

Standard library only, and only relative imports between its modules: the same files are imported on the
host as ``harness.core.nucleus.device`` (unit tests) and run on the target by its own python3.
"""
