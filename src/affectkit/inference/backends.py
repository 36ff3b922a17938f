"""Run a preprocessed batch through the PyTorch model or its ONNX export; both return numpy arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from affectkit.errors import AffectkitError
from affectkit.models.factory import AffectModel
from affectkit.models.registry import sha256_of

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]  # expression logits [.., N, 8], valence [.., N], arousal [.., N]
OUTPUT_NAMES = ("expression_logits", "valence", "arousal")
INPUT_NAME = "image"
WEIGHTS_DIGEST_KEY = "affectkit_weights_sha256"
MODEL_DESCRIPTION_KEY = "affectkit_model"  # the model's .json, whole, in its ONNX export


def weights_digest(path: Path) -> str:
    """Identifies the weights an ONNX file was exported from, so a stale export is never used silently."""
    return sha256_of(Path(path))


class TorchBackend:
    name = "torch"

    def __init__(self, model: AffectModel, device: str = "cpu"):
        self.model = model.eval()
        self.device = torch.device(device)

    def __call__(self, batch: np.ndarray) -> Outputs:
        with torch.inference_mode():
            outputs = self.model(torch.from_numpy(batch).to(self.device))
        return tuple(o.float().cpu().numpy() for o in outputs)

    def features(self, batch: np.ndarray) -> np.ndarray:
        """The backbone's pooled features [N, D]: the face model's embedding of each face."""
        with torch.inference_mode():
            return self.model.backbone(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()

    def sample(self, batch: np.ndarray, n: int) -> Outputs:
        """Monte-Carlo dropout: ``n`` passes with the head's dropout active, stacked on a leading axis.

        Dropout exists only in the head (the factory's contract), so the backbone runs once and only the head
        is repeated; BatchNorm and everything else stay in eval mode.
        """
        dropouts = [m for m in self.model.head.modules() if isinstance(m, nn.Dropout)]
        try:
            for m in dropouts:
                m.train()
            with torch.inference_mode():
                features = self.model.backbone(torch.from_numpy(batch).to(self.device))
                samples = [self.model.outputs_from_features(features) for _ in range(n)]
        finally:
            for m in dropouts:
                m.eval()
        return tuple(torch.stack(parts).float().cpu().numpy() for parts in zip(*samples))


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Follow the process's torch thread budget so one knob governs both back ends.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
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
