"""A fusion model from its trained branches: each branch is trained alone, as the model it is (its own early stopping
and checkpoint selection on val); then they are put into one :class:`~affectkit.models.factory.FusionHead` model
and the fusion is chosen on the validation split.

Each trained branch predicts the validation images alone; the first branch's temperature is fit on them, then each
further branch in turn joins what the branches before it fused, with its own temperature and the weight of its
calibrated log-probabilities that give the lowest validation log-loss
(:func:`affectkit.evaluation.ensemble.fit_late_fusion`): one weight searched at a time, however many branches. The
chosen values live in the model's buffers, so the saved file, its ONNX export and the server all predict the fused
output. The test split plays no part.

A run's averaging ensemble (:func:`assemble_ensemble`) is put together the same way from the run's saved models,
with nothing to choose: equal weights, each member at the temperature it was calibrated to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from affectkit.config import Config
from affectkit.data.datamodule import PreparedData
from affectkit.errors import AffectkitError
from affectkit.evaluation.calibration import fit_temperature
from affectkit.evaluation.ensemble import FUSION_WEIGHTS, fit_late_fusion
from affectkit.evaluation.evaluator import Predictions, evaluation_device, predict_split
from affectkit.models.factory import AffectModel, build_model
from affectkit.models.io import load_model, save_model


@dataclass(frozen=True)
class FusionFit:
    weights: tuple[float, ...]  # of each branch's calibrated log-probabilities (and valence/arousal), summing to 1
    temperatures: tuple[float, ...]
    val_nll: float  # log-loss of the fused probabilities on the validation split (NaN: valence/arousal models)
    val_nll_branches: tuple[float, ...]  # of each branch alone, calibrated
    # Valence/arousal models (no class trained on) are fused by their validation valence/arousal MSE instead.
    criterion: str = "log-loss"
    val_va_mse: float | None = None
    val_va_mse_branches: tuple[float, ...] | None = None


VA_CRITERION = "valence/arousal MSE"


def choose_fusion(branches: Sequence[Predictions], labels: np.ndarray,
                  valence_arousal: np.ndarray | None = None) -> FusionFit:
    """The first branch's temperature, then, branch by branch, the weight and temperature with which it joins the
    fusion of those before it (by log-loss), from each branch's validation predictions alone. Valence/arousal
    models' branches join by the weight with the lowest valence/arousal MSE against ``valence_arousal``."""
    if len(branches) < 2:
        raise AffectkitError(f"A fusion needs the predictions of two or more branches, got {len(branches)}.")
    if not all(b.predicts_expression for b in branches):
        return _choose_by_valence_arousal(branches, valence_arousal)
    first, *others = branches
    temperature = fit_temperature(torch.from_numpy(first.logits), torch.from_numpy(labels))
    fused = first.tempered(temperature).probs
    weights, steps = [1.0], []
    for branch in others:
        step = fit_late_fusion(fused, branch.probs, labels)
        weights = [w * (1 - step.weight) for w in weights] + [step.weight]
        fused = step.apply(fused, branch.probs)
        steps.append(step)
    return FusionFit(tuple(weights), (temperature, *(s.temperature for s in steps)), steps[-1].val_nll,
                     (steps[0].val_nll_first, *(s.val_nll_second for s in steps)))


def _choose_by_valence_arousal(branches: Sequence[Predictions], target: np.ndarray | None) -> FusionFit:
    annotated = np.zeros(0, dtype=bool) if target is None else np.isfinite(target).all(axis=1)
    if not annotated.any():
        raise AffectkitError("A fusion of valence/arousal models is chosen by its validation valence/arousal error, "
                             "and no validation face has valence and arousal.")

    def mse(va: np.ndarray) -> float:
        return float(((va[annotated] - target[annotated]) ** 2).mean())

    fused, weights = branches[0].valence_arousal, [1.0]
    for branch in branches[1:]:
        scores = [mse((1 - w) * fused + w * branch.valence_arousal) for w in FUSION_WEIGHTS]
        weight = FUSION_WEIGHTS[int(np.argmin(scores))]  # the first of equal scores: the smaller weight
        weights = [w * (1 - weight) for w in weights] + [weight]
        fused = (1 - weight) * fused + weight * branch.valence_arousal
    nan = float("nan")
    return FusionFit(tuple(weights), (1.0,) * len(branches), nan, (nan,) * len(branches), VA_CRITERION, mse(fused),
                     tuple(mse(b.valence_arousal) for b in branches))


def assemble_fusion(key: str, branch_paths: list[Path], data: PreparedData, config: Config,
                    out_stem: Path) -> tuple[AffectModel, FusionFit]:
    """The fusion model ``key`` with the saved branch models' weights, its fusion chosen on ``data``'s validation
    split, saved as ``out_stem``; its description names where each branch started and what it kept."""
    model = build_model(key, config)
    val = data.positions("val")
    branches, metas = _load_branches(model, branch_paths)
    # Each saved network alone: the same outputs as its branch in the fused graph, one backbone per pass.
    predictions = [predict_split(branch, data, val, tta_flip=config.tta_flip) for branch in branches]
    fit = choose_fusion(predictions, data.expression[val], data.valence_arousal[val])
    model.head.set_fusion(fit.weights, fit.temperatures)
    names = [meta["display_name"] for meta in metas]
    save_model(model, out_stem, config, extra={
        "fusion": {"branches": names, **asdict(fit)},
        "branch_best": {name: meta["best"] for name, meta in zip(names, metas) if meta.get("best")},
        **_provenance(metas),
    })
    return model, fit


def assemble_ensemble(key: str, member_paths: list[Path], config: Config, out_stem: Path) -> AffectModel:
    """The averaging ensemble ``key`` (``ensemble:<model>+<model>...``) of a run's saved, calibrated models: the mean
    of their probabilities, each at its own temperature, and of their valence and arousal, as one model saved as
    ``out_stem`` that predicts, exports and serves as any other. Nothing is chosen: no split is read."""
    model = build_model(key, config)
    _, metas = _load_branches(model, member_paths)
    temperatures = [float(meta.get("temperature") or 1.0) for meta in metas]
    model.head.set_fusion([1 / len(metas)] * len(metas), temperatures)
    names = [meta["display_name"] for meta in metas]
    save_model(model, out_stem, config, extra={
        "ensemble": {"members": names, "temperatures": temperatures},
        "branch_best": {name: meta["best"] for name, meta in zip(names, metas) if meta.get("best")},
        **_provenance(metas),
    })
    return model


def _load_branches(model: AffectModel, paths: list[Path]) -> tuple[list[AffectModel], list[dict]]:
    """The saved models at ``paths`` loaded into ``model``'s branches, in order; ``model`` predicts the classes and
    valence/arousal all of them learnt. Returns the saved models and their descriptions."""
    branches, metas = [], []
    for backbone, head, path in zip(model.backbone.branches, model.head.heads, paths):
        branch, meta = load_model(path, device=evaluation_device())
        backbone.load_state_dict(branch.backbone.state_dict())
        head.load_state_dict(branch.head.state_dict())
        model.output_classes &= branch.output_classes.cpu()
        model.valence_arousal_trained &= branch.valence_arousal_trained.cpu()
        branches.append(branch)
        metas.append(meta)
    return branches, metas


def _provenance(metas: list[dict]) -> dict:
    """Where each branch started, and the face framing the first measured on the training faces."""
    names = [meta["display_name"] for meta in metas]
    return {
        "initial_weights": "+".join(meta.get("initial_weights", "unknown") for meta in metas),
        "initial_weights_detail": "; ".join(f"{name}: {meta.get('initial_weights_detail', '')}"
                                            for name, meta in zip(names, metas)),
        **{key: metas[0][key] for key in ("face_margin", "face_margin_faces") if key in metas[0]},
    }


__all__ = ["VA_CRITERION", "FusionFit", "assemble_ensemble", "assemble_fusion", "choose_fusion"]
