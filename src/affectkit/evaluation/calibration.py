"""Temperature scaling: one number T, fit on the validation split after training, by which every later use of the
model divides its logits (Guo et al. 2017). It changes the probabilities, never the predicted class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from affectkit.evaluation.evaluator import Predictions
from affectkit.models.io import update_metadata


def fit_temperature(logits: Tensor, targets: Tensor, max_iter: int = 100) -> float:
    """Temperature T > 0 minimising the NLL of ``softmax(logits / T)``; fit on held-out logits, not training ones."""
    logits = logits.detach().double()
    targets = targets.detach().long()
    # Optimising log T keeps T positive without a constrained optimiser.
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp())


def calibrate(model_path: Path, val: Predictions, labels: np.ndarray) -> float:
    """Fit the saved model's temperature on its validation predictions ``val`` (true classes ``labels``) and store it
    with the model (its ``.json``), so every later use applies it; returns the temperature."""
    temperature = fit_temperature(torch.from_numpy(val.logits), torch.from_numpy(labels))
    update_metadata(model_path, temperature=temperature)
    return temperature
