#!/usr/bin/env bash
# The two commands of the README, on a fresh Debian 12 machine as root:
#   ./run.sh qualify [harness qualify options]   # the main job: qualification, reports under reports/
#   ./run.sh test [pytest options]               # the harness's own tests
# Everything else is installed here: python3-venv (apt), tox (pip, in .venv), then tox installs the
# harness and its `harness setup` step installs the system packages targets need.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
    echo "run.sh: must run as root (targets need namespaces, loop devices and cgroups; setup uses apt)." >&2
    echo "        try: sudo $0 $*" >&2
    exit 2
fi
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "run.sh: installing python3 and python3-venv with apt-get" >&2
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv
fi
if [ ! -x .venv/bin/tox ]; then
    echo "run.sh: creating .venv with tox" >&2
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check 'tox>=4.11'
fi
what="${1:-}"
[ $# -gt 0 ] && shift
case "$what" in
    qualify) exec .venv/bin/tox run -q -e qualify -- "$@" ;;
    test)    exec .venv/bin/tox run -q -e tests -- "$@" ;;
    lint)    exec .venv/bin/tox run -q -e lint -- "$@" ;;
    bench)   exec .venv/bin/tox run -q -e bench -- "$@" ;;
    *) echo "usage: $0 qualify|test|lint|bench [args...]" >&2; exit 2 ;;
esac
