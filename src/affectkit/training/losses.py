"""The spec's weighted multi-task loss, with the opt-in focal / class-weighted / CCC variants."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from affectkit.config import LossConfig


def ccc_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """``1 - CCC`` of two 1-D batches, differentiable, with sample moments: over the samples ``weight`` (0 or 1 each)
    keeps, all where it is None. Needs two kept samples; with fewer the moments divide by at least 1, so the result
    stays finite (and its gradient zero where weights are 0) for a caller that then uses another loss."""
    weight = torch.ones_like(pred) if weight is None else weight
    n = weight.sum().clamp(min=2)
    pred_mean, target_mean = (pred * weight).sum() / n, (target * weight).sum() / n
    pred_dev, target_dev = (pred - pred_mean) * weight, (target - target_mean) * weight
    covariance = (pred_dev * target_dev).sum() / (n - 1)
    denominator = ((pred_dev ** 2).sum() + (target_dev ** 2).sum()) / (n - 1) + (pred_mean - target_mean) ** 2
    # Only zero when both are the same constant; the CCC is then taken as 0, as in the reported metric.
    return 1 - 2 * covariance / denominator.clamp_min(torch.finfo(denominator.dtype).eps)


def focal_loss(logits: Tensor, target: Tensor, gamma: float, weight: Tensor | None = None,
               label_smoothing: float = 0.0) -> Tensor:
    """Focal loss (Lin et al. 2017), mean reduction, built to be ``F.cross_entropy`` at ``gamma = 0``.

    ``target`` is class ids [N] or class probabilities [N, C] (MixUp/CutMix). Each log-probability is scaled by
    ``(1 - p) ** gamma`` and then reduced exactly as cross_entropy reduces log-probabilities, including its
    handling of ``weight`` (ids: divided by the summed weights of the targets; probabilities: by N) and of
    ``label_smoothing``.
    """
    log_probs = F.log_softmax(logits, dim=1)
    focal_log_probs = (1 - log_probs.exp()).pow(gamma) * log_probs
    n_classes = logits.shape[1]
    class_weight = weight if weight is not None else torch.ones(n_classes, dtype=logits.dtype, device=logits.device)
    if target.is_floating_point():
        smoothed = target * (1 - label_smoothing) + label_smoothing / n_classes
        return -(focal_log_probs * smoothed * class_weight).sum(dim=1).mean()
    target_weight = class_weight[target]
    nll = -(target_weight * focal_log_probs.gather(1, target[:, None]).squeeze(1)).sum() / target_weight.sum()
    uniform = -(focal_log_probs * class_weight).sum() / target_weight.sum()
    return (1 - label_smoothing) * nll + label_smoothing / n_classes * uniform


def annotated(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """``(target, mask)`` with each unannotated (non-finite) target replaced by the detached prediction, so that it
    adds no error and no gradient, and ``mask`` true where the target was annotated. Masking this way, not by boolean
    indexing or a test of the mask, never makes a training step wait for the GPU (a host sync): the CPU keeps
    queueing the step's work ahead of it."""
    mask = torch.isfinite(target)
    return torch.where(mask, target, pred.detach()), mask


def _masked(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Regression loss over the annotated samples only (see :func:`annotated`); zero (with a graph) when a batch has
    none."""
    target, mask = annotated(pred, target)
    weight = mask.to(pred.dtype)
    count = weight.sum()
    mse = ((pred - target) ** 2 * weight).sum() / count.clamp(min=1)
    if kind != "ccc":
        return mse
    # CCC needs two samples (sample moments); with fewer the batch's loss is its MSE.
    return torch.where(count > 1, ccc_loss(pred, target, weight), mse)


def _among(classes: Tensor, logits: Tensor, target: Tensor, weight: Tensor | None):
    """Logits, targets and class weights restricted to the columns ``classes``: the cross-entropy (and its label
    smoothing) spreads no probability onto expressions the training data lacks. Index operations only, so nothing
    waits for the device."""
    if target.is_floating_point():
        target = target.index_select(1, classes)
    else:
        position = torch.full((logits.shape[1],), -1, dtype=torch.long, device=target.device)
        position[classes] = torch.arange(len(classes), device=target.device)  # class id -> its kept column
        target = position[target]
    return (logits.index_select(1, classes), target,
            weight.index_select(0, classes) if weight is not None else None)


def multitask_loss(
    logits: torch.Tensor,
    valence: torch.Tensor,
    arousal: torch.Tensor,
    expression_target: torch.Tensor,  # class ids [N] or soft targets [N, 8] (MixUp/CutMix)
    va_target: torch.Tensor,  # [N, 2], NaN where not annotated
    cfg: LossConfig,
    class_weights: torch.Tensor | None = None,
    classes: torch.Tensor | None = None,  # long [K]: the columns of the expressions trained on (None: all eight)
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    weight = class_weights if cfg.class_weighting else None
    if classes is not None:
        logits, expression_target, weight = _among(classes, logits, expression_target, weight)
    if cfg.focal_gamma is not None:
        expression = focal_loss(logits, expression_target, cfg.focal_gamma, weight=weight, label_smoothing=cfg.label_smoothing)
    else:
        expression = F.cross_entropy(logits, expression_target, weight=weight, label_smoothing=cfg.label_smoothing)
    val = _masked(valence, va_target[:, 0], cfg.regression)
    aro = _masked(arousal, va_target[:, 1], cfg.regression)
    total = cfg.expression_weight * expression + cfg.valence_weight * val + cfg.arousal_weight * aro
    return total, {"expression_loss": expression, "valence_loss": val, "arousal_loss": aro}
