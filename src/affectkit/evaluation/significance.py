"""How sure a test score is: bootstrap confidence intervals of the expression scores, and the paired comparison of
two models on the same test faces (the difference in accuracy with its interval, and McNemar's exact test).

A test split of a few hundred faces (CK+'s subject-disjoint one has about 200) moves a model's accuracy by several
points from one draw of faces to another: two rows of a benchmark a point apart are often the same model as far as
the data can tell, and these say so. Faces without a class are left out, as the expression scores leave them out.

Where the data names who is who, the bootstrap draws people, not faces: the frames of one person's sequence are
nearly the same face, right or wrong together, and resampling them one by one would make an interval look several
times surer than the data is. scipy's ``bootstrap`` resamples observations only, so the draws are made here: each
resample weighs every face by how often its person was drawn.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import binomtest

from affectkit.config import NO_EXPRESSION, NUM_CLASSES

CONFIDENCE = 0.95
RESAMPLES = 2000
SCORES = ("accuracy", "macro_f1", "balanced_accuracy")
BATCH = 200  # resamples at once, fewer on a large set: (resamples, faces) weights stay within WEIGHTS_PER_BATCH
WEIGHTS_PER_BATCH = 4_000_000


def _score(confusion: np.ndarray, score: str) -> np.ndarray:
    """A score of (..., K, K) confusion counts (or weights), as :class:`~affectkit.evaluation.metrics.AffectMetrics`
    computes it: macro-F1 over the classes given or predicted (torchmetrics leaves out a class with neither),
    balanced accuracy over the classes given (scikit-learn's)."""
    hits = np.diagonal(confusion, axis1=-2, axis2=-1).astype(float)
    given, predicted = confusion.sum(axis=-1), confusion.sum(axis=-2)
    if score == "accuracy":
        return hits.sum(axis=-1) / given.sum(axis=-1)
    if score == "balanced_accuracy":
        present = given > 0
        return np.where(present, hits / np.where(present, given, 1), 0).sum(axis=-1) / present.sum(axis=-1)
    if score == "macro_f1":
        seen = (given + predicted) > 0
        f1 = np.where(seen, 2 * hits / np.where(seen, given + predicted, 1), 0)
        return f1.sum(axis=-1) / seen.sum(axis=-1)
    raise ValueError(f"unknown score {score!r}; the scores are {', '.join(SCORES)}")


def _cells(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(N, K * K): each face's cell of the confusion matrix, one-hot, so that weights @ cells is a confusion."""
    cells = np.zeros((len(labels), NUM_CLASSES * NUM_CLASSES))
    cells[np.arange(len(labels)), labels * NUM_CLASSES + predicted] = 1
    return cells


def _codes(groups: ArrayLike | None, keep: np.ndarray) -> np.ndarray:
    """The group of each kept face as integer codes 0..G-1; a face of no known group (None, NaN; every face where
    ``groups`` is None) is a group of its own."""
    if groups is None:
        groups = np.full(len(keep), None, dtype=object)
    names = [f"group {g}" if g is not None and g == g else f"face {i}"  # NaN != NaN
             for i, g in enumerate(np.asarray(groups, dtype=object))]
    _, codes = np.unique(np.asarray(names, dtype=str)[keep], return_inverse=True)
    return codes.reshape(-1)


def _classed(labels: ArrayLike, groups: ArrayLike | None, *predicted: ArrayLike) -> tuple[np.ndarray, ...]:
    """The faces with a class: labels, the group of each as integer codes, and each model's predictions."""
    labels = np.asarray(labels, dtype=np.int64)
    keep = labels != NO_EXPRESSION
    return (labels[keep], _codes(groups, keep), *(np.asarray(p, dtype=np.int64)[keep] for p in predicted))


def _weights(codes: np.ndarray, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Batches of (resamples, faces) weights: each resample draws as many groups as there are, with replacement, and
    weighs each face by how often its group was drawn."""
    rng = np.random.default_rng(seed)
    n_groups = int(codes.max()) + 1
    per_batch = max(1, min(BATCH, WEIGHTS_PER_BATCH // len(codes)))
    for start in range(0, resamples, per_batch):
        batch = min(per_batch, resamples - start)
        drawn = rng.integers(0, n_groups, (batch, n_groups)) + np.arange(batch)[:, None] * n_groups
        counts = np.bincount(drawn.ravel(), minlength=batch * n_groups).reshape(batch, n_groups)
        yield counts[:, codes].astype(np.float32)


def _resampled(values: np.ndarray, codes: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(resamples, ...) weighted sums of ``values`` (faces, ...) over group resamples."""
    flat = values.reshape(len(values), -1).astype(np.float64)  # sums of squares: no float32 cancellation
    sums = np.concatenate([w @ flat for w in _weights(codes, resamples, seed)])
    return sums.reshape(resamples, *values.shape[1:])


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def score_intervals(labels: ArrayLike, predicted: ArrayLike, groups: ArrayLike | None = None,
                    confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                    seed: int = 0) -> dict[str, tuple[float, float]]:
    """``{score: (low, high)}``: the ``confidence`` percentile bootstrap interval of accuracy, macro-F1 and balanced
    accuracy over the test faces, resampled ``resamples`` times by ``groups`` (a person per face, where known; else
    face by face); empty without a classed face."""
    labels, codes, predicted = _classed(labels, groups, predicted)
    if len(labels) == 0:
        return {}
    confusions = _resampled(_cells(labels, predicted), codes, resamples, seed).reshape(-1, NUM_CLASSES, NUM_CLASSES)
    return {score: _interval(_score(confusions, score), confidence) for score in SCORES}


def point_scores(labels: ArrayLike, predicted: ArrayLike) -> dict[str, float]:
    """``{score: value}``: accuracy, macro-F1 and balanced accuracy of the faces with a class, as the intervals
    compute them; empty without a classed face."""
    labels, _, predicted = _classed(labels, None, predicted)
    if len(labels) == 0:
        return {}
    confusion = _cells(labels, predicted).sum(axis=0).reshape(NUM_CLASSES, NUM_CLASSES)
    return {score: float(_score(confusion, score)) for score in SCORES}


@dataclass(frozen=True)
class GroupGap:
    """One model's accuracy on the faces of one group (``first``) minus its accuracy on another's (``second``),
    with the bootstrap interval of that difference."""

    first: str
    second: str
    difference: float
    low: float
    high: float

    def verdict(self) -> str:
        """"a real gap" where the interval leaves out 0, else "not told apart"."""
        return "a real gap" if self.low > 0 or self.high < 0 else "not told apart"


def group_gap(labels: ArrayLike, predicted: ArrayLike, membership: ArrayLike, first: str, second: str,
              groups: ArrayLike | None = None, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
              seed: int = 0) -> GroupGap:
    """The accuracy on the classed faces whose ``membership`` is ``first`` minus that on those whose membership is
    ``second``, resampled by ``groups`` (people) drawn once for both sides: a person whose faces fall on both (a
    head pose, an age across sessions) is drawn for both together."""
    membership = np.asarray(membership, dtype=object)
    labels, codes, predicted, side = _classed(labels, groups, predicted, np.select(
        [membership == first, membership == second], [1, 2], 0))
    hit = (labels == predicted).astype(np.float64)
    values = np.stack([hit * (side == 1), side == 1, hit * (side == 2), side == 2], axis=1).astype(np.float64)
    if not values[:, 1].any() or not values[:, 3].any():
        raise ValueError(f"no classed face in {first if not values[:, 1].any() else second}")

    def gap(sums: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):  # a resample that drew nobody of one side
            return sums[..., 0] / sums[..., 1] - sums[..., 2] / sums[..., 3]

    resampled = gap(_resampled(values, codes, resamples, seed))
    low, high = _interval(resampled[np.isfinite(resampled)], confidence)
    return GroupGap(first, second, float(gap(values.sum(axis=0))), low, high)


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
    grouped: bool = False  # resampled by person

    def verdict(self, confidence: float = CONFIDENCE) -> str:
        """The first model in words: better, worse, or not told apart by these faces. McNemar's exact test at
        ``confidence`` decides (exact where few faces differ, which a bootstrap interval is not); where faces were
        resampled by person, the interval must leave out 0 as well (McNemar counts a person's faces as
        independent)."""
        if self.p_value >= 1 - confidence or (self.grouped and self.low <= 0 <= self.high):
            return "not told apart"
        return "better" if self.only_first > self.only_second else "worse"


def paired_comparison(labels: ArrayLike, first: ArrayLike, second: ArrayLike, groups: ArrayLike | None = None,
                      confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0) -> PairedComparison:
    """``first`` against ``second`` (predicted class ids of the same faces, in the same order), resampling the faces
    (or their ``groups``) together, so that what both get right or wrong alike does not widen the interval."""
    labels, codes, first, second = _classed(labels, groups, first, second)
    if len(labels) == 0:
        raise ValueError("no face with an expression class to compare the models on")
    right_first, right_second = first == labels, second == labels
    gain = right_first.astype(float) - right_second.astype(float)
    only_first, only_second = int((right_first & ~right_second).sum()), int((right_second & ~right_first).sum())
    discordant = only_first + only_second
    p_value = 1.0 if discordant == 0 else float(binomtest(only_first, discordant, 0.5).pvalue)
    sums = _resampled(np.stack([gain, np.ones_like(gain)], axis=1), codes, resamples, seed)
    low, high = _interval(sums[:, 0] / sums[:, 1], confidence)
    grouped = groups is not None and int(codes.max()) + 1 < len(labels)
    return PairedComparison(len(labels), float(gain.mean()), low, high, only_first, only_second, p_value, grouped)


def _resampled_ccc(sums: np.ndarray) -> np.ndarray:
    """The CCC of each resample from its moment sums (..., 6): x, y, x², y², xy and the count; 0 where a resample
    has no concordance (one person's constant predictions), as the metrics count it. The moments are torchmetrics'
    (n - 1)."""
    sx, sy, sxx, syy, sxy, n = np.moveaxis(sums, -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_x, mean_y = sx / n, sy / n
        denominator = np.maximum(n - 1, 1)
        var_x, var_y = (sxx - n * mean_x**2) / denominator, (syy - n * mean_y**2) / denominator
        cov = (sxy - n * mean_x * mean_y) / denominator
        ccc = 2 * cov / (var_x + var_y + (mean_x - mean_y) ** 2)
    return np.nan_to_num(ccc, nan=0.0, posinf=0.0, neginf=0.0)


def _moments(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, 6) per face: x, y, x², y², xy and 1, all 0 for a face not annotated (``truth`` NaN)."""
    keep = np.isfinite(truth)
    x, y = np.where(keep, predicted, 0.0), np.where(keep, truth, 0.0)
    return np.stack([x, y, x * x, y * y, x * y, keep.astype(np.float64)], axis=1)


def ccc_interval(predicted: ArrayLike, truth: ArrayLike, groups: ArrayLike | None = None,
                 confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                 seed: int = 0) -> tuple[float, float] | None:
    """The ``confidence`` percentile bootstrap interval of the concordance correlation (CCC) of one valence/arousal
    dimension over the faces annotated in it (``truth`` finite), resampled by ``groups`` as
    :func:`score_intervals` does; None with fewer than 3 such faces."""
    predicted, truth = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    keep = np.isfinite(truth)
    if keep.sum() < 3:
        return None
    sums = _resampled(_moments(predicted[keep], truth[keep]), _codes(groups, keep), resamples, seed)
    return _interval(_resampled_ccc(sums), confidence)


def ccc_score(predicted: ArrayLike, truth: ArrayLike) -> float | None:
    """The concordance correlation of one valence/arousal dimension over the faces annotated in it (``truth``
    finite), as :func:`ccc_interval` computes it; None with fewer than 3 such faces."""
    predicted, truth = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    keep = np.isfinite(truth)
    if keep.sum() < 3:
        return None
    return float(_resampled_ccc(_moments(predicted[keep], truth[keep]).sum(axis=0)))


@dataclass(frozen=True)
class PairedCCC:
    """Two valence/arousal models on the same test faces: ``difference`` = first's mean CCC (valence and arousal,
    each over the faces annotated in it) - second's, with its bootstrap interval."""

    faces: int
    difference: float
    low: float
    high: float
    grouped: bool = False  # resampled by person

    def verdict(self) -> str:
        """The first model in words: better or worse where the interval leaves out 0, else not told apart."""
        if self.low <= 0 <= self.high:
            return "not told apart"
        return "better" if self.difference > 0 else "worse"


def paired_ccc_comparison(truth: ArrayLike, first: ArrayLike, second: ArrayLike, groups: ArrayLike | None = None,
                          confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0) -> PairedCCC:
    """``first`` against ``second`` ((N, 2) valence and arousal of the same faces, in the same order; ``truth`` NaN
    where not annotated) by their mean CCC, the faces (or their ``groups``) resampled together for both."""
    truth, first, second = (np.asarray(a, dtype=np.float64).reshape(-1, 2) for a in (truth, first, second))
    keep = np.isfinite(truth).any(axis=1)
    annotated = np.isfinite(truth).sum(axis=0) >= 3  # the dimensions with faces enough to score
    if not annotated.any():
        raise ValueError("fewer than 3 faces with valence or arousal to compare the models on")
    truth, first, second = truth[keep], first[keep], second[keep]
    columns = [_moments(model[:, d], truth[:, d]) for model in (first, second) for d in range(2)]
    values = np.stack(columns, axis=1)  # (faces, model x dimension, 6)
    codes = _codes(groups, keep)

    def mean_ccc_gain(sums: np.ndarray) -> np.ndarray:
        ccc = _resampled_ccc(sums).reshape(*sums.shape[:-2], 2, 2)[..., annotated]  # (..., model, dimension)
        return ccc[..., 0, :].mean(axis=-1) - ccc[..., 1, :].mean(axis=-1)

    difference = float(mean_ccc_gain(values.sum(axis=0)))
    low, high = _interval(mean_ccc_gain(_resampled(values, codes, resamples, seed)), confidence)
    grouped = groups is not None and int(codes.max()) + 1 < len(truth)
    return PairedCCC(len(truth), difference, low, high, grouped)


__all__ = ["CONFIDENCE", "GroupGap", "PairedCCC", "PairedComparison", "ccc_interval", "ccc_score", "group_gap",
           "paired_ccc_comparison", "paired_comparison", "point_scores", "score_intervals"]
