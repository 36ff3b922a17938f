"""Inference: face detection, prediction, ONNX export and the ``predict`` / ``export`` / ``serve`` commands.

Names are imported on first use so that ``affectkit --help`` does not pay for torch and OpenCV.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Face": "affectkit.inference.faces",
    "FaceDetector": "affectkit.inference.faces",
    "crop_face": "affectkit.inference.faces",
    "Predictor": "affectkit.inference.predictor",
    "export_onnx": "affectkit.inference.export",
    "onnx_parity": "affectkit.inference.export",
    "predict_media": "affectkit.inference.media",
    "write_results": "affectkit.inference.media",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
