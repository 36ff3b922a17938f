"""Run a preprocessed batch through the PyTorch model; returns numpy arrays, as the ONNX backend does."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from affectkit.inference.backends import Outputs
from affectkit.models.factory import AffectModel


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
