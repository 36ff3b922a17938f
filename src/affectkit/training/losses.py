"""The spec's weighted multi-task loss, with the opt-in focal / class-weighted / CCC variants."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from affectkit.config import LossConfig
from affectkit.evaluation.metrics import ccc_loss, focal_loss


def _masked(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Regression loss over the annotated samples only; zero (with a graph) when a batch has none."""
    mask = torch.isfinite(target)
    if not mask.any():
        return pred.sum() * 0.0
    pred, target = pred[mask], target[mask]
    if kind == "ccc" and len(target) > 1:
        return ccc_loss(pred, target)
    return F.mse_loss(pred, target)


def multitask_loss(
    logits: torch.Tensor,
    valence: torch.Tensor,
    arousal: torch.Tensor,
    expression_target: torch.Tensor,  # class ids [N] or soft targets [N, 8] (MixUp/CutMix)
    va_target: torch.Tensor,  # [N, 2], NaN where not annotated
    cfg: LossConfig,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    weight = class_weights if cfg.class_weighting else None
    if cfg.focal_gamma is not None:
        expression = focal_loss(logits, expression_target, cfg.focal_gamma, weight=weight, label_smoothing=cfg.label_smoothing)
    else:
        expression = F.cross_entropy(logits, expression_target, weight=weight, label_smoothing=cfg.label_smoothing)
    val = _masked(valence, va_target[:, 0], cfg.regression)
    aro = _masked(arousal, va_target[:, 1], cfg.regression)
    total = cfg.expression_weight * expression + cfg.valence_weight * val + cfg.arousal_weight * aro
    return total, {"expression_loss": expression, "valence_loss": val, "arousal_loss": aro}
