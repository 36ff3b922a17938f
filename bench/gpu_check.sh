#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py: speeds of the spec profile on a CUDA GPU, a resumed real run):
#   bash bench/gpu_check.sh [--out DIR] [options of bench/gpu_check.py]
# Runs from a clean clone: with the project's .venv where there is one, else with python3 and the sources in src/
# (on a GPU machine whose image already holds PyTorch). Without an NVIDIA GPU it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "No NVIDIA GPU on this machine (nvidia-smi finds none): nothing measured."
    exit 0
fi
if [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
else
    PY=${PYTHON:-python3}
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec "$PY" bench/gpu_check.py "$@"
