"""The spec's weighted multi-task loss, with the opt-in focal / class-weighted / CCC variants."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from affectkit.config import NO_EXPRESSION, LossConfig


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


_TINY = torch.finfo(torch.float32).tiny  # the smallest divisor: a batch without any class divides 0 by it


def focal_loss(logits: Tensor, target: Tensor, gamma: float, weight: Tensor | None = None,
               label_smoothing: float = 0.0) -> Tensor:
    """Focal loss (Lin et al. 2017), mean reduction, built to be :func:`expression_loss` (cross-entropy) at
    ``gamma = 0``: each log-probability is scaled by ``(1 - p) ** gamma`` and then reduced as that reduces them."""
    log_probs = F.log_softmax(logits, dim=1)
    return _reduce(logits, (1 - log_probs.exp()).pow(gamma) * log_probs, target, weight, label_smoothing)


def expression_loss(logits: Tensor, target: Tensor, weight: Tensor | None = None,
                    label_smoothing: float = 0.0) -> Tensor:
    """``F.cross_entropy`` (class weights, label smoothing, mean reduction) over the faces that have a class: a
    target of ``NO_EXPRESSION`` (ids) or an all-zero row (probabilities) adds nothing, and a batch without any class
    gives zero (with a graph)."""
    if target.is_floating_point():
        return _reduce(logits, F.log_softmax(logits, dim=1), target, weight, label_smoothing)
    # Summed and divided here, not averaged by cross_entropy: its mean of no face is 0/0.
    total = F.cross_entropy(logits, target, weight=weight, ignore_index=NO_EXPRESSION,
                            label_smoothing=label_smoothing, reduction="sum")
    return total / _target_weights(logits, target, weight).sum().clamp_min(_TINY)


def _target_weights(logits: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
    """Each face's weight in the mean: its class's weight (1 without class weights), 0 without a class."""
    with_class = target != NO_EXPRESSION
    class_weight = weight if weight is not None else logits.new_ones(logits.shape[1])
    return class_weight[target.clamp(min=0)] * with_class


def _reduce(logits: Tensor, log_probs: Tensor, target: Tensor, weight: Tensor | None,
            label_smoothing: float) -> Tensor:
    """Reduce (possibly focal-scaled) log-probabilities as ``F.cross_entropy`` reduces log-probabilities, over the
    faces with a class. Class ids: divided by the summed weights of the targets. Probabilities [N, C] (votes,
    MixUp/CutMix): divided by their summed mass, N where every face has a class."""
    n_classes = logits.shape[1]
    class_weight = weight if weight is not None else logits.new_ones(n_classes)
    if target.is_floating_point():
        mass = target.sum(dim=1, keepdim=True)  # 1 for a face with a class, 0 without
        smoothed = target * (1 - label_smoothing) + label_smoothing / n_classes * mass
        return -(log_probs * smoothed * class_weight).sum() / mass.sum().clamp_min(_TINY)
    target_weight = _target_weights(logits, target, weight)
    safe_target = target.clamp(min=0)
    nll = -(target_weight * log_probs.gather(1, safe_target[:, None]).squeeze(1)).sum()
    uniform = -(log_probs * class_weight * (target != NO_EXPRESSION)[:, None]).sum()
    denominator = target_weight.sum().clamp_min(_TINY)
    return ((1 - label_smoothing) * nll + label_smoothing / n_classes * uniform) / denominator


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
        # class id -> its kept column; a class not trained on, like a face without one, adds nothing to the loss
        position = torch.full((logits.shape[1],), NO_EXPRESSION, dtype=torch.long, device=target.device)
        position[classes] = torch.arange(len(classes), device=target.device)
        target = torch.where(target == NO_EXPRESSION, target, position[target.clamp(min=0)])
    return (logits.index_select(1, classes), target,
            weight.index_select(0, classes) if weight is not None else None)


def trained_columns(output_classes: Tensor) -> Tensor | None:
    """The columns :func:`multitask_loss` restricts the expression loss to, from a model's ``output_classes`` mask:
    None where it was trained on all eight (read once, outside the steps: a test of the mask waits for the device)."""
    trained = output_classes.cpu()
    return None if trained.all() else trained.nonzero().flatten()


def multitask_loss(
    logits: torch.Tensor,
    valence: torch.Tensor,
    arousal: torch.Tensor,
    expression_target: torch.Tensor,  # class ids [N] (NO_EXPRESSION: none) or soft targets [N, 8] (zero: none)
    va_target: torch.Tensor,  # [N, 2], NaN where not annotated
    cfg: LossConfig,
    class_weights: torch.Tensor | None = None,
    classes: torch.Tensor | None = None,  # long [K]: the columns of the classes trained on (None: all; K may be 0)
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    weight = class_weights if cfg.class_weighting else None
    if classes is not None:
        logits, expression_target, weight = _among(classes, logits, expression_target, weight)
    if logits.shape[1] == 0:  # a valence/arousal model (no class trained on): nothing to learn, a graph kept
        expression = valence.sum() * 0
    elif cfg.focal_gamma is not None:
        expression = focal_loss(logits, expression_target, cfg.focal_gamma, weight=weight, label_smoothing=cfg.label_smoothing)
    else:
        expression = expression_loss(logits, expression_target, weight=weight, label_smoothing=cfg.label_smoothing)
    val = _masked(valence, va_target[:, 0], cfg.regression)
    aro = _masked(arousal, va_target[:, 1], cfg.regression)
    total = cfg.expression_weight * expression + cfg.valence_weight * val + cfg.arousal_weight * aro
    return total, {"expression_loss": expression, "valence_loss": val, "arousal_loss": aro}
