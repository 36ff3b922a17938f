"""Inference: face detection, prediction over images, folders and videos, and ONNX export.

Names are imported on first use so that importing one of them does not pay for torch and OpenCV.
"""

from affectkit.lazy import lazy_exports

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

__getattr__ = lazy_exports(__name__, _EXPORTS)
