#!/usr/bin/env bash
# Create .venv with the CPU build of torch (pinned, so nothing pulls multi-GB CUDA packages) and
# reasonsift with its training, math and test extras. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[dev]"
echo "reasonsift installed in $(pwd)/.venv"
