"""Answering only the faces a model is surest of: accuracy by the share answered, the threshold that reaches an
accuracy, and how thresholds read on validation faces hold on others. NumPy only, so that a served model reads its
abstention threshold without the evaluation libraries."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike


COVERAGES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)  # shares of the faces answered, the surest first


def coverage_curve(probs: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Answering only the faces a model is surest of: for k = 1..N the faces answered, the share of them answered
    right and the lowest confidence among them (the threshold that answers them), the surest face first."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    correct = (probs.argmax(axis=1) == np.asarray(targets))[order]
    answered = np.arange(1, len(order) + 1)
    return answered, np.cumsum(correct) / answered, confidence[order]


def selective_accuracy(probs: ArrayLike, targets: ArrayLike, coverages: Sequence[float] = COVERAGES) -> list[dict]:
    """At each share of the faces answered (``coverages``), the surest first: the confidence a face needs
    (``min_confidence``), the share answered and the accuracy on them. A model whose confidence means something
    grows more accurate as it answers fewer."""
    answered, accuracy, threshold = coverage_curve(probs, targets)
    rows = []
    for coverage in coverages:
        k = max(1, int(np.ceil(coverage * len(answered))))
        # The threshold unrounded: rounded up, it would abstain on faces it answered here.
        rows.append({"coverage": round(k / len(answered), 4), "min_confidence": float(threshold[k - 1]),
                     "accuracy": round(float(accuracy[k - 1]), 4)})
    return rows


# The finer grid stored with a saved model, from which a served model's abstention threshold is read.
VALIDATION_COVERAGES = tuple(round(1 - 0.05 * i, 2) for i in range(20))
# Fewer validation faces than this with a class make a threshold chosen on them too coarse to store.
MIN_COVERAGE_FACES = 20


def threshold_for_accuracy(coverage: Sequence[dict], target: float) -> dict | None:
    """Of the rows of :func:`selective_accuracy`, the one answering the most faces with an accuracy of at least
    ``target`` (its ``min_confidence`` is the threshold to abstain below); None where no share reaches it."""
    reaching = [row for row in coverage if row["accuracy"] >= target]
    return max(reaching, key=lambda row: row["coverage"], default=None)


def thresholds_held_out(probs: ArrayLike, targets: ArrayLike, curve: Sequence[dict]) -> list[dict]:
    """Each threshold of a :func:`selective_accuracy` ``curve`` read on the validation faces, applied to these: the
    share of them it answers and their accuracy (None where it answers none), beside the validation ones. Whether an
    abstention threshold chosen there holds on faces it was not chosen on."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(targets)
    rows = []
    for row in curve:
        answered = confidence >= row["min_confidence"]
        rows.append({"min_confidence": row["min_confidence"], "validation_coverage": row["coverage"],
                     "validation_accuracy": row["accuracy"], "coverage": round(float(answered.mean()), 4),
                     "accuracy": round(float(correct[answered].mean()), 4) if answered.any() else None})
    return rows


# The --target-accuracy values at which an evaluation compares thresholds per class with the overall one.
CLASS_THRESHOLD_TARGETS = (0.8, 0.9, 0.95)


def class_thresholds(by_class: dict, target: float) -> dict[str, dict | None]:
    """Each class's row of :func:`threshold_for_accuracy` for ``target``, read from the curve of the validation faces
    predicted as it (``by_class``: a model's ``validation_coverage["by_class"]``); None for a class whose faces never
    reach it."""
    return {name: threshold_for_accuracy(found["curve"], target) for name, found in by_class.items()}


def needed_confidence(predicted: str, overall: float, own: dict[str, float | None]) -> float:
    """The confidence a face predicted as ``predicted`` needs to be answered under thresholds per class: its class's
    own threshold where ``own`` has one (None: its class never reached the target, so no confidence will do), the
    ``overall`` one for any other class."""
    if predicted not in own:
        return overall
    return math.inf if own[predicted] is None else own[predicted]


def class_thresholds_held_out(probs: ArrayLike, targets: ArrayLike, recorded: dict, class_names: Sequence[str],
                              target_accuracies: Sequence[float] = CLASS_THRESHOLD_TARGETS) -> list[dict]:
    """For each target accuracy the validation faces reach (``recorded``: a model's ``validation_coverage``), the
    overall threshold and the thresholds per class (``--per-class-thresholds``, :func:`needed_confidence`) applied
    to these faces: the share of them each answers and its accuracy (None where none)."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = predicted == np.asarray(targets)

    def answered_share(answered: np.ndarray) -> dict:
        return {"coverage": round(float(answered.mean()), 4),
                "accuracy": round(float(correct[answered].mean()), 4) if answered.any() else None}

    rows = []
    for target in target_accuracies:
        overall = threshold_for_accuracy(recorded["curve"], target)
        if overall is None:
            continue
        own = {name: None if row is None else row["min_confidence"]
               for name, row in class_thresholds(recorded["by_class"], target).items()}
        needed = np.array([needed_confidence(class_names[c], overall["min_confidence"], own) for c in predicted])
        rows.append({"target_accuracy": target, "overall": answered_share(confidence >= overall["min_confidence"]),
                     "per_class": answered_share(confidence >= needed)})
    return rows
