"""How sure a test score is: bootstrap confidence intervals of the expression scores, and the paired comparison of
two models on the same test faces (the difference in accuracy with its interval, and McNemar's exact test).

A test split of a few hundred faces (CK+'s subject-disjoint one has about 200) moves a model's accuracy by several
points from one draw of faces to another: two rows of a benchmark a point apart are often the same model as far as
the data can tell, and these say so. Faces without a class are left out, as the expression scores leave them out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import binomtest, bootstrap

from affectkit.config import NO_EXPRESSION, NUM_CLASSES

CONFIDENCE = 0.95
RESAMPLES = 2000
SCORES = ("accuracy", "macro_f1", "balanced_accuracy")
BATCH = 200  # resamples at once: (BATCH, faces) arrays stay small on an AffectNet-sized test set


def _confusion(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(..., K, K) confusion counts of label / prediction arrays shaped (..., N)."""
    flat = (labels * NUM_CLASSES + predicted).reshape(-1, labels.shape[-1])
    cells = NUM_CLASSES * NUM_CLASSES
    offsets = np.arange(len(flat))[:, None] * cells
    counts = np.bincount((flat + offsets).ravel(), minlength=len(flat) * cells)
    return counts.reshape(*labels.shape[:-1], NUM_CLASSES, NUM_CLASSES)


def _score(confusion: np.ndarray, score: str) -> np.ndarray:
    """A score of (..., K, K) confusion counts, as :class:`~affectkit.evaluation.metrics.AffectMetrics` computes it:
    macro-F1 over the classes given or predicted (torchmetrics leaves out a class with neither), balanced accuracy
    over the classes given (scikit-learn's)."""
    hits = np.diagonal(confusion, axis1=-2, axis2=-1).astype(float)
    given, predicted = confusion.sum(axis=-1), confusion.sum(axis=-2)
    if score == "accuracy":
        return hits.sum(axis=-1) / given.sum(axis=-1)
    if score == "balanced_accuracy":
        present = given > 0
        return np.where(present, hits / np.maximum(given, 1), 0).sum(axis=-1) / present.sum(axis=-1)
    if score == "macro_f1":
        seen = (given + predicted) > 0
        f1 = np.where(seen, 2 * hits / np.maximum(given + predicted, 1), 0)
        return f1.sum(axis=-1) / seen.sum(axis=-1)
    raise ValueError(f"unknown score {score!r}; the scores are {', '.join(SCORES)}")


def _classed(labels: ArrayLike, *predicted: ArrayLike) -> tuple[np.ndarray, ...]:
    labels = np.asarray(labels, dtype=np.int64)
    keep = labels != NO_EXPRESSION
    return (labels[keep], *(np.asarray(p, dtype=np.int64)[keep] for p in predicted))


def score_intervals(labels: ArrayLike, predicted: ArrayLike, confidence: float = CONFIDENCE,
                    resamples: int = RESAMPLES, seed: int = 0) -> dict[str, tuple[float, float]]:
    """``{score: (low, high)}``: the ``confidence`` percentile bootstrap interval of accuracy, macro-F1 and balanced
    accuracy over the test faces (resampled with replacement, ``resamples`` times); empty without a classed face."""
    labels, predicted = _classed(labels, predicted)
    if len(labels) == 0:
        return {}
    intervals = {}
    for score in SCORES:
        def statistic(true: np.ndarray, guess: np.ndarray, axis: int = -1, score: str = score) -> np.ndarray:
            return _score(_confusion(np.moveaxis(true, axis, -1), np.moveaxis(guess, axis, -1)), score)

        if len(labels) == 1:  # one face: nothing to resample
            value = float(statistic(labels, predicted))
            intervals[score] = (value, value)
            continue
        result = bootstrap((labels, predicted), statistic, paired=True, vectorized=True, n_resamples=resamples,
                           batch=BATCH, confidence_level=confidence, method="percentile",
                           rng=np.random.default_rng(seed))
        intervals[score] = (float(result.confidence_interval.low), float(result.confidence_interval.high))
    return intervals


@dataclass(frozen=True)
class PairedComparison:
    """Two models on the same test faces: ``difference`` = first's accuracy - second's, with its bootstrap interval;
    the faces only the first got right and only the second got right; McNemar's exact p-value (two-sided) that both
    are right as often."""

    faces: int
    difference: float
    low: float
    high: float
    only_first: int
    only_second: int
    p_value: float

    def verdict(self, confidence: float = CONFIDENCE) -> str:
        """The first model in words: better, worse, or not told apart by these faces, by McNemar's exact test at
        ``confidence`` (exact where few faces differ, which the bootstrap interval is not)."""
        if self.p_value >= 1 - confidence:
            return "not told apart"
        return "better" if self.only_first > self.only_second else "worse"


def paired_comparison(labels: ArrayLike, first: ArrayLike, second: ArrayLike, confidence: float = CONFIDENCE,
                      resamples: int = RESAMPLES, seed: int = 0) -> PairedComparison:
    """``first`` against ``second`` (predicted class ids of the same faces, in the same order), resampling the faces
    together, so that what both get right or wrong alike does not widen the interval."""
    labels, first, second = _classed(labels, first, second)
    if len(labels) == 0:
        raise ValueError("no face with an expression class to compare the models on")
    right_first, right_second = first == labels, second == labels
    gain = right_first.astype(float) - right_second.astype(float)
    only_first, only_second = int((right_first & ~right_second).sum()), int((right_second & ~right_first).sum())
    discordant = only_first + only_second
    p_value = 1.0 if discordant == 0 else float(binomtest(only_first, discordant, 0.5).pvalue)
    if discordant == 0:  # the same faces right: every resample's difference is 0
        low = high = 0.0
    else:
        result = bootstrap((gain,), np.mean, vectorized=True, n_resamples=resamples, batch=BATCH,
                           confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return PairedComparison(len(labels), float(gain.mean()), low, high, only_first, only_second, p_value)


__all__ = ["CONFIDENCE", "PairedComparison", "paired_comparison", "score_intervals"]
