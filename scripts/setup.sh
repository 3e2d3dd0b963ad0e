#!/usr/bin/env bash
# Create .venv and install dream-rl with the extras the tests and the docs use. Safe to run again.
# torch 2.13.0 is installed first and on its own: it is the local CPU build on our machines,
# while a bare `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev,docs,ray,tune,popgym,zoo]"
echo "dream-rl installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
