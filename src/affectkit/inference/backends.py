"""Run a preprocessed batch through a model's ONNX export (the PyTorch model's counterpart is in
:mod:`affectkit.inference.torch_backend`); both return numpy arrays. Imports no PyTorch: an exported model serves
without it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from affectkit.errors import AffectkitError
from affectkit.models.metadata import sha256_of

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]  # expression logits [.., N, 8], valence [.., N], arousal [.., N]
OUTPUT_NAMES = ("expression_logits", "valence", "arousal")
INPUT_NAME = "image"
WEIGHTS_DIGEST_KEY = "affectkit_weights_sha256"
MODEL_DESCRIPTION_KEY = "affectkit_model"  # the model's .json, whole, in its ONNX export
QUANTIZATION_KEY = "affectkit_quantization"  # an int8 export's: what was quantised, and how


def weights_digest(path: Path) -> str:
    """Identifies the weights an ONNX file was exported from, so a stale export is never used silently."""
    return sha256_of(Path(path))


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Follow the process's torch thread budget (--threads sets it) so one knob governs both back ends; where
        # PyTorch is not loaded, onnxruntime's own choice (0), as PyTorch's, is a thread per physical core.
        torch = sys.modules.get("torch")
        options.intra_op_num_threads = threads or (torch.get_num_threads() if torch is not None else 0)
        options.inter_op_num_threads = 1
        # Between runs onnxruntime's threads spin, waiting for the next: they then take the cores from the face
        # detector and the image decoding that run between the model's calls (bench/results/live.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise AffectkitError(f"{path} is not a loadable ONNX model ({exc}).") from None
        names = [o.name for o in self.session.get_outputs()]
        if tuple(names) != OUTPUT_NAMES or self.session.get_inputs()[0].name != INPUT_NAME:
            raise AffectkitError(f"{path} is not an affectkit export (outputs {names}); re-run `affectkit export`.")
        self.path = path
        self.metadata = self.session.get_modelmeta().custom_metadata_map

    def __call__(self, batch: np.ndarray) -> Outputs:
        logits, valence, arousal = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return logits, valence, arousal

    def exported_from_other_weights(self, weights: Path) -> bool:
        """Whether this export records the digest of other weights than ``weights`` (False where it records none,
        or ``weights`` does not exist)."""
        exported_from = self.metadata.get(WEIGHTS_DIGEST_KEY)
        return bool(exported_from) and weights.is_file() and exported_from != weights_digest(weights)
