#!/usr/bin/env bash
# Set up .venv (see setup.sh) and run the fast test suite. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m slow` for the learning runs and the upstream sb3-contrib suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
