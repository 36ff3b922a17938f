"""Ensembles of a run's models: their predictions averaged, or stacked.

Stacking: a second-level model learns how much to trust each member, from the members' validation predictions.
Expression: multinomial logistic regression on the members' concatenated log-probabilities. Valence and arousal:
one ridge regression each on every member's valence and arousal predictions. Fit it on a split the members did not
train on (the validation split); score it on another (the test split).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge

from affectkit.config import NUM_CLASSES
from affectkit.errors import AffectkitError
from affectkit.evaluation.evaluator import Predictions

# Log-probabilities of confident members reach -inf; the floor keeps the features finite and their scale sane.
PROB_FLOOR = 1e-6
# Strong L2: validation splits are small and the 8 x 8M weight matrix overfits them at C = 1 (on synthetic members
# it then lost 2-3 points of accuracy to the best member alone; at 0.03 it stays within half a point).
STACKING_C = 0.03


@dataclass
class StackingEnsemble:
    classifier: LogisticRegression
    # One per dimension (valence, arousal); None where the validation split had under two annotated targets.
    regressors: list[Ridge | None]
    n_members: int

    def predict(self, probs_list: list[np.ndarray], va_list: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities [N, 8] over every class, valence/arousal [N, 2] in [-1, 1])."""
        _check_members(probs_list, va_list, self.n_members)
        present = self.classifier.predict_proba(expression_features(probs_list))
        probs = np.zeros((len(present), NUM_CLASSES))
        # Classes absent from the validation labels cannot be learnt; they get no probability mass.
        probs[:, self.classifier.classes_] = present
        features = va_features(va_list)
        member_mean = np.mean(va_list, axis=0)
        va = np.column_stack([
            r.predict(features) if r is not None else member_mean[:, dim] for dim, r in enumerate(self.regressors)
        ])
        return probs, np.clip(va, -1.0, 1.0)


def expression_features(probs_list: list[np.ndarray]) -> np.ndarray:
    return np.log(np.clip(np.concatenate(probs_list, axis=1), PROB_FLOOR, None))


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
                 seed: int = 0) -> StackingEnsemble:
    """Fit the second-level models on the members' predictions for the same validation rows."""
    _check_members(val_probs, val_va)
    y_val = np.asarray(y_val)
    if len(np.unique(y_val)) < 2:
        raise AffectkitError("Stacking needs at least two expression classes in the validation labels.")
    classifier = LogisticRegression(C=STACKING_C, max_iter=2000, random_state=seed)
    classifier.fit(expression_features(val_probs), y_val)
    features = va_features(val_va)
    va_val = np.asarray(va_val, dtype=np.float64)
    regressors: list[Ridge | None] = []
    for dim in range(2):
        annotated = np.isfinite(va_val[:, dim])
        regressors.append(Ridge(alpha=1.0).fit(features[annotated], va_val[annotated, dim])
                          if annotated.sum() >= 2 else None)
    return StackingEnsemble(classifier, regressors, len(val_probs))


def _from_probs(probs: np.ndarray, valence_arousal: np.ndarray) -> Predictions:
    return Predictions(np.log(np.clip(probs, 1e-12, None)), valence_arousal)


def average(members: list[Predictions]) -> Predictions:
    """The members' (calibrated) expression probabilities and valence/arousal, averaged."""
    return _from_probs(np.mean([m.probs for m in members], axis=0),
                       np.mean([m.valence_arousal for m in members], axis=0))


def stack(val: list[Predictions], test: list[Predictions], y_val: np.ndarray, va_val: np.ndarray) -> Predictions:
    """A stacking ensemble fit on the members' validation predictions ``val`` (labels ``y_val``, ``va_val``),
    applied to their test predictions ``test``."""
    stacker = fit_stacking([m.probs for m in val], [m.valence_arousal for m in val], y_val, va_val, seed=0)
    return _from_probs(*stacker.predict([m.probs for m in test], [m.valence_arousal for m in test]))
