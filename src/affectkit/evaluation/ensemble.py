"""Ensembles of a run's models: their predictions averaged, or stacked; and a late fusion of two classifiers.

Stacking: a second-level model learns how much to trust each member, from the members' validation predictions.
Expression: multinomial logistic regression on the members' concatenated log-probabilities. Valence and arousal:
one ridge regression each on every member's valence and arousal predictions. Fit it on a split the members did not
train on (the validation split); score it on another (the test split).

Late fusion: one weight, not a second-level model, so that a validation split of a few hundred faces can choose it:
the weighted geometric mean of two classifiers' probabilities, the second first calibrated by a temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import log_softmax, softmax
from sklearn.linear_model import LogisticRegression, Ridge

from affectkit.config import NO_EXPRESSION, NUM_CLASSES
from affectkit.errors import AffectkitError
from affectkit.evaluation.calibration import fit_temperature
from affectkit.evaluation.evaluator import Predictions
from affectkit.evaluation.metrics import log_loss

# Log-probabilities of confident members reach -inf; the floor keeps the features finite and their scale sane.
PROB_FLOOR = 1e-6
# Strong L2: validation splits are small and the 8 x 8M weight matrix overfits them at C = 1, falling behind the best
# member alone (bench/results/implementation_choices.md).
STACKING_C = 0.03


@dataclass
class StackingEnsemble:
    classifier: LogisticRegression | None  # None for valence/arousal models (no expression to stack)
    # One per dimension (valence, arousal); None where the validation split had under two annotated targets.
    regressors: list[Ridge | None]
    n_members: int

    def predict(self, probs_list: list[np.ndarray], va_list: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [N, 8] over every class, valence/arousal [N, 2] in [-1, 1])."""
        _check_members(probs_list, va_list, self.n_members)
        probs = np.full((len(probs_list[0]), NUM_CLASSES), 1 / NUM_CLASSES)
        if self.classifier is not None:
            probs[:] = 0  # classes absent from the validation labels cannot be learnt: they get no probability mass
            probs[:, self.classifier.classes_] = self.classifier.predict_proba(expression_features(probs_list))
        features = va_features(va_list)
        member_mean = np.mean(va_list, axis=0)
        va = np.column_stack([
            r.predict(features) if r is not None else member_mean[:, dim] for dim, r in enumerate(self.regressors)
        ])
        return probs, np.clip(va, -1.0, 1.0)


def expression_features(probs_list: list[np.ndarray]) -> np.ndarray:
    return _log(np.concatenate(probs_list, axis=1))


def va_features(va_list: list[np.ndarray]) -> np.ndarray:
    # Every member's valence and arousal for each target: one dimension's prediction can inform the other.
    return np.concatenate(va_list, axis=1)


def _check_members(probs_list: list[np.ndarray], va_list: list[np.ndarray], n_members: int | None = None) -> None:
    if not probs_list or len(probs_list) != len(va_list):
        raise AffectkitError(f"Stacking needs one probability and one valence/arousal array per member, got "
                             f"{len(probs_list)} and {len(va_list)}.")
    if n_members is not None and len(probs_list) != n_members:
        raise AffectkitError(f"The stacking ensemble was fit on {n_members} members, got {len(probs_list)}.")
    if any(p.shape[1] != NUM_CLASSES for p in probs_list) or any(v.shape[1] != 2 for v in va_list):
        raise AffectkitError(f"Member probabilities must be [N, {NUM_CLASSES}] and valence/arousal [N, 2].")


def fit_stacking(val_probs: list[np.ndarray], val_va: list[np.ndarray], y_val: np.ndarray, va_val: np.ndarray,
                 seed: int = 0, expression: bool = True) -> StackingEnsemble:
    """Fit the second-level models on the members' predictions for the same validation rows; without
    ``expression`` (valence/arousal models) the regressors alone."""
    _check_members(val_probs, val_va)
    classifier = None
    if expression:
        y_val = np.asarray(y_val)
        with_class = y_val != NO_EXPRESSION  # faces annotated for valence/arousal only fit the regressors alone
        if len(np.unique(y_val[with_class])) < 2:
            raise AffectkitError("Stacking needs at least two expression classes in the validation labels.")
        classifier = LogisticRegression(C=STACKING_C, max_iter=2000, random_state=seed)
        classifier.fit(expression_features(val_probs)[with_class], y_val[with_class])
    features = va_features(val_va)
    va_val = np.asarray(va_val, dtype=np.float64)
    regressors: list[Ridge | None] = []
    for dim in range(2):
        annotated = np.isfinite(va_val[:, dim])
        regressors.append(Ridge(alpha=1.0).fit(features[annotated], va_val[annotated, dim])
                          if annotated.sum() >= 2 else None)
    return StackingEnsemble(classifier, regressors, len(val_probs))


def average(members: list[Predictions]) -> Predictions:
    """The members' (calibrated) expression probabilities and valence/arousal, averaged."""
    return Predictions.from_probs(np.mean([m.probs for m in members], axis=0),
                                  np.mean([m.valence_arousal for m in members], axis=0),
                                  all(m.predicts_expression for m in members),
                                  all(m.predicts_valence_arousal for m in members))


def stack(val: list[Predictions], test: list[Predictions], y_val: np.ndarray, va_val: np.ndarray) -> Predictions:
    """A stacking ensemble fit on the members' validation predictions ``val`` (labels ``y_val``, ``va_val``),
    applied to their test predictions ``test``."""
    expression = all(m.predicts_expression for m in val)
    stacker = fit_stacking([m.probs for m in val], [m.valence_arousal for m in val], y_val, va_val, seed=0,
                           expression=expression)
    return Predictions.from_probs(*stacker.predict([m.probs for m in test], [m.valence_arousal for m in test]),
                                  predicts_expression=expression,
                                  predicts_valence_arousal=all(m.predicts_valence_arousal for m in val))


FUSION_WEIGHTS = tuple(round(w, 2) for w in np.arange(0.0, 1.0001, 0.05))


@dataclass(frozen=True)
class LateFusion:
    weight: float  # of the second classifier's log-probabilities; 0: the first classifier alone
    temperature: float  # the second classifier's, fit on the validation split
    val_nll: float  # of the fused probabilities at ``weight``
    val_nll_first: float  # of the first classifier alone (weight 0)
    val_nll_second: float  # of the second classifier alone, calibrated (weight 1)

    def apply(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Fused probabilities [N, 8] from the two classifiers' probabilities for the same images."""
        return _fuse(_log(first), _calibrated_log(second, self.temperature), self.weight)


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probs, PROB_FLOOR, None))


def _calibrated_log(probs: np.ndarray, temperature: float) -> np.ndarray:
    return log_softmax(_log(probs) / temperature, axis=1)


def _fuse(log_first: np.ndarray, log_second: np.ndarray, weight: float) -> np.ndarray:
    return softmax((1.0 - weight) * log_first + weight * log_second, axis=1)


def fit_late_fusion(val_first: np.ndarray, val_second: np.ndarray, y_val: np.ndarray,
                    weights: tuple[float, ...] = FUSION_WEIGHTS) -> LateFusion:
    """The weight of ``p ~ first^(1-w) * second_T^w`` with the lowest validation log-loss (ties: the smaller
    weight), ``second`` calibrated by its own temperature on the same rows. Log-loss rather than accuracy: on a
    validation split of a few hundred faces, accuracy ties across most weights."""
    y_val = np.asarray(y_val)
    if len(val_first) != len(val_second) or len(val_first) != len(y_val) or len(y_val) == 0:
        raise AffectkitError(f"Late fusion needs both classifiers' probabilities for the same validation rows, got "
                             f"{len(val_first)}, {len(val_second)} and {len(y_val)} labels.")
    with_class = y_val != NO_EXPRESSION
    if not with_class.any():
        raise AffectkitError("Late fusion needs validation faces with an expression class; none has one.")
    val_first, val_second, y_val = val_first[with_class], val_second[with_class], y_val[with_class]
    temperature = fit_temperature(torch.from_numpy(_log(val_second)), torch.from_numpy(y_val))
    log_first, log_second = _log(val_first), _calibrated_log(val_second, temperature)
    scores = [log_loss(_fuse(log_first, log_second, w), y_val) for w in weights]
    best = int(np.argmin(scores))  # argmin takes the first of equal values: the smaller weight
    return LateFusion(float(weights[best]), temperature, scores[best],
                      log_loss(_fuse(log_first, log_second, 0.0), y_val),
                      log_loss(_fuse(log_first, log_second, 1.0), y_val))
