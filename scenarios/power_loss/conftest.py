"""The power-loss suite's fixtures (``nucleus``, ``--nucleus-fault``) come from harness.pytest_nucleus."""
