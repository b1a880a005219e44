"""The docker suite's fixtures (docker_edge, status_observer, --docker-fault) are in harness.pytest_docker."""
