#!/usr/bin/env bash
# Create .venv and install the project. Usage: scripts/setup.sh [extras], e.g. "test".
# Without an NVIDIA GPU, the CPU build of torch is installed first, so the project's torch range
# is already satisfied and no multi-GB CUDA build is pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
if ! python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    python -m pip install --quiet "torch>=2.4,<2.15"
  else
    python -m pip install --quiet "torch==2.13.0" \
      || python -m pip install --quiet --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
  fi
fi
if [ -n "$extras" ]; then
  python -m pip install --quiet -e ".[$extras]"
else
  python -m pip install --quiet -e .
fi
