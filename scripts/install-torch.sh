#!/usr/bin/env bash
# Install torch into the environment before the package, so pip does not pull
# gigabytes of CUDA wheels onto machines that have no CUDA:
# - an existing torch (a GPU user's own build) is kept;
# - with an NVIDIA driver present, pip's default (CUDA) build is installed;
# - otherwise torch==2.13.0, whose CPU wheel is on disk on our machines.
set -euo pipefail
PY="$1"
if "$PY" -c "import torch" >/dev/null 2>&1; then
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  "$PY" -m pip install -q torch
else
  "$PY" -m pip install -q "torch==2.13.0"
fi
