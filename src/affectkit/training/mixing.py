"""MixUp and CutMix for multi-task targets: the expression becomes a soft target, valence/arousal mix alike.

Phase 1 trains the head on stored pooled features of the frozen backbone (:mod:`affectkit.training.features`). There
a batch is mixed by interpolating the features (MixUp at the pooled layer, Verma et al. 2019), so mixing keeps the
stored features instead of costing a backbone pass per step; CutMix's patches have no place in a pooled vector, so
stored features always interpolate, with CutMix's alpha where MixUp is off."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from affectkit.config import NO_EXPRESSION, NUM_CLASSES, AugmentationConfig


def _cutmix_box(h: int, w: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    cut = np.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = rng.integers(h), rng.integers(w)
    return max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    """Classes [N] as rows of 8; a face without a class (NO_EXPRESSION) is a row of zeros, which the loss leaves
    out, and mixed with a face that has one weighs by that face's share."""
    with_class = labels != NO_EXPRESSION
    return F.one_hot(labels.clamp(min=0), NUM_CLASSES) * with_class[:, None]


def mixes(aug: AugmentationConfig) -> bool:
    return aug.mixup_alpha > 0 or aug.cutmix_alpha > 0


def mix_batch(
    images: torch.Tensor, labels: torch.Tensor, va: torch.Tensor, aug: AugmentationConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (images, soft expression targets [N, 8], valence/arousal) mixed with one weight per batch.
    ``labels`` are classes [N] (NO_EXPRESSION: none) or vote distributions [N, 8]. ``images`` may also be pooled
    features [N, D]: those are interpolated (see the module's note)."""
    soft = labels.to(images.dtype) if labels.is_floating_point() else one_hot(labels).to(images.dtype)
    if not mixes(aug) or rng.random() > aug.mix_prob:
        return images, soft, va
    use_mixup, use_cutmix = aug.mixup_alpha > 0, aug.cutmix_alpha > 0
    perm = torch.from_numpy(rng.permutation(len(images))).to(images.device)
    pooled = images.dim() == 2
    cutmix = use_cutmix and not pooled and (not use_mixup or rng.random() < 0.5)
    alpha = aug.cutmix_alpha if cutmix or not use_mixup else aug.mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    if cutmix:
        y0, y1, x0, x1 = _cutmix_box(images.shape[-2], images.shape[-1], lam, rng)
        images = images.clone()
        images[..., y0:y1, x0:x1] = images[perm][..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (images.shape[-2] * images.shape[-1])  # the area actually kept
    else:
        images = lam * images + (1 - lam) * images[perm]
    return images, lam * soft + (1 - lam) * soft[perm], lam * va + (1 - lam) * va[perm]
