"""Global magnitude pruning of a model's convolution and dense weights.

Unstructured sparsity leaves the tensors dense: the saved file only shrinks once compressed, and dense CPU kernels
run no faster. It is a size-on-the-wire tool, not a latency one.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]


def apply_pruning(model: nn.Module, amount: float) -> nn.Module:
    """Zero the ``amount`` fraction of smallest-magnitude weights over all conv/linear layers together, keeping the
    masks attached: further training then leaves the pruned weights at zero (finish with :func:`make_permanent`)."""
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    # Global rather than per-layer: small layers (the output heads) keep their weights, wide ones give up more.
    prune.global_unstructured(prunable_weights(model), pruning_method=prune.L1Unstructured, amount=amount)
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold the masks into the weights and drop them, so the state dict has its usual keys again."""
    for module, name in prunable_weights(model):
        if prune.is_pruned(module):
            prune.remove(module, name)
    return model


def prune_model(model: nn.Module, amount: float) -> nn.Module:
    """Global L1 unstructured pruning of conv and linear weights, made permanent; modifies and returns ``model``."""
    return make_permanent(apply_pruning(model, amount))


@torch.no_grad()
def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries among the conv/linear weights (the tensors pruning acts on)."""
    weights = [module.weight for module, _ in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total if total else 0.0
