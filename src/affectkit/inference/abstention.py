"""Abstaining on faces a model is unsure of: the expression confidence below which a face is marked ``abstained``,
given as a number or read from the model's accuracy on its validation faces at each confidence, for all faces or
for the faces predicted as each class."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from affectkit.errors import AffectkitError
from affectkit.evaluation.selective import (
    MIN_COVERAGE_FACES,
    class_thresholds,
    needed_confidence,
    threshold_for_accuracy,
)
from affectkit.models.metadata import predicts_expression


@dataclass(frozen=True)
class ClassThreshold:
    """The threshold for the faces predicted as one class, read from the validation faces predicted as it: their
    number, and the share of them it answered and got right there. ``min_confidence`` None: no share of them was
    right often enough, so every face predicted as the class is abstained on."""

    min_confidence: float | None
    faces: int
    validation_coverage: float | None
    validation_accuracy: float | None  # the best there where ``min_confidence`` is None

    def as_dict(self) -> dict[str, Any]:
        return {"min_confidence": self.min_confidence, "faces": self.faces,
                "validation_coverage": self.validation_coverage, "validation_accuracy": self.validation_accuracy}


@dataclass(frozen=True)
class Abstention:
    """Faces whose expression confidence is below ``min_confidence`` are marked ``abstained`` (their most probable
    class and probabilities are still given). Where the threshold was read from the validation faces for
    ``target_accuracy``, ``validation_coverage`` and ``validation_accuracy`` say what it did there. ``by_class``: the
    classes with a threshold of their own (the faces predicted as any other class take ``min_confidence``)."""

    min_confidence: float
    target_accuracy: float | None = None
    validation_coverage: float | None = None  # the share of the validation faces it answered
    validation_accuracy: float | None = None  # the share of those it answered right
    by_class: dict[str, ClassThreshold] | None = None

    @cached_property
    def _own_thresholds(self) -> dict[str, float | None]:
        return {name: threshold.min_confidence for name, threshold in (self.by_class or {}).items()}

    def abstains(self, expression: str, confidence: float) -> bool:
        """Whether a face predicted as ``expression`` with this confidence is abstained on."""
        return confidence < needed_confidence(expression, self.min_confidence, self._own_thresholds)

    def describe(self) -> str:
        """A phrase: how the threshold was set."""
        if self.target_accuracy is None:
            return f"confidence below {self.min_confidence:.2f} (as asked)"
        overall = (f"confidence below {self.min_confidence:.2f}, read from the validation faces: answering "
                   f"{self.validation_coverage:.0%} of them, {self.validation_accuracy:.1%} right, for "
                   f"--target-accuracy {self.target_accuracy:g}")
        if self.by_class is None:
            return overall
        if not self.by_class:
            return f"{overall} (no class was predicted on enough validation faces to read a threshold of its own)"
        own = "; ".join(_class_phrase(name, threshold) for name, threshold in self.by_class.items())
        return f"per class, from the validation faces predicted as it: {own}; any other class: {overall}"

    def as_dict(self) -> dict[str, Any]:
        return {"min_confidence": self.min_confidence, "target_accuracy": self.target_accuracy,
                "validation_coverage": self.validation_coverage, "validation_accuracy": self.validation_accuracy,
                "by_class": None if self.by_class is None else {
                    name: threshold.as_dict() for name, threshold in self.by_class.items()}}


def _class_phrase(name: str, threshold: ClassThreshold) -> str:
    if threshold.min_confidence is None:
        return (f"{name} always unsure ({threshold.validation_accuracy:.1%} of its {threshold.faces} faces right at "
                "best)")
    return (f"{name} below {threshold.min_confidence:.2f} (answering {threshold.validation_coverage:.0%} of its "
            f"{threshold.faces} faces, {threshold.validation_accuracy:.1%} right)")


def check_abstention_request(min_confidence: float | None = None, target_accuracy: float | None = None,
                             per_class: bool = False) -> None:
    """Refuse an abstention asked for wrongly whatever the model: both ways of setting the threshold, a value out of
    range, or thresholds per class without the accuracy to read them for. Called before a model is loaded, so a typo
    costs no load."""
    if min_confidence is not None and target_accuracy is not None:
        raise AffectkitError("--min-confidence and --target-accuracy both set the confidence to abstain below: give "
                             "one of them.")
    if min_confidence is not None and not 0 < min_confidence <= 1:
        raise AffectkitError(f"--min-confidence must be in (0, 1] (the probability of the most probable class), "
                             f"got {min_confidence}.")
    if target_accuracy is not None and not 0 < target_accuracy < 1:
        raise AffectkitError(f"--target-accuracy must be in (0, 1) (the share of the answered faces to get right), "
                             f"got {target_accuracy}.")
    if per_class and target_accuracy is None:
        raise AffectkitError("--per-class-thresholds reads each class's threshold for --target-accuracy from the "
                             "validation faces: give --target-accuracy.")


def abstention_for(meta: dict[str, Any], model_path: str | Path, min_confidence: float | None = None,
                   target_accuracy: float | None = None, per_class: bool = False) -> Abstention | None:
    """The abstention asked for a model (its description ``meta``, saved at ``model_path``): a ``min_confidence``
    as given, or the lowest confidence at which the model's validation faces were answered with an accuracy of
    ``target_accuracy`` or more; with ``per_class``, also such a confidence for the faces predicted as each class
    that was predicted on enough validation faces. None where no threshold is given. The values given are those
    :func:`check_abstention_request` accepts (the predictor checks them before it loads the model)."""
    if min_confidence is None and target_accuracy is None:
        return None
    if not predicts_expression(meta):
        raise AffectkitError(f"{model_path} predicts valence and arousal only: it has no expression confidence to "
                             "abstain on (--min-confidence, --target-accuracy).")
    if min_confidence is not None:
        return Abstention(float(min_confidence))
    recorded = meta.get("validation_coverage")
    if not recorded:
        raise AffectkitError(
            f"{model_path} records no accuracy on its validation faces by confidence, which --target-accuracy reads "
            f"(it was saved without being evaluated, by an affectkit before it recorded it, with fewer than "
            f"{MIN_COVERAGE_FACES} validation faces with a class, or ready-made by `affectkit pretrained`): give "
            "--min-confidence instead.")
    row = threshold_for_accuracy(recorded["curve"], target_accuracy)
    if row is None:
        best = max(recorded["curve"], key=lambda r: r["accuracy"])
        raise AffectkitError(
            f"{model_path} gets {best['accuracy']:.1%} of its {recorded['faces']} validation faces right at best "
            f"(answering its surest {best['coverage']:.0%}), short of --target-accuracy {target_accuracy:g}: ask "
            "for less, or give --min-confidence.")
    by_class = None
    if per_class:
        if "by_class" not in recorded:
            raise AffectkitError(
                f"{model_path} records its accuracy by confidence on all its validation faces but not on those "
                "predicted as each class, which --per-class-thresholds reads (it was saved by an affectkit before it "
                "recorded them): train it again, or drop --per-class-thresholds.")
        by_class = {name: _class_threshold(recorded["by_class"][name], row)
                    for name, row in class_thresholds(recorded["by_class"], target_accuracy).items()}
    return Abstention(row["min_confidence"], target_accuracy, row["coverage"], row["accuracy"], by_class)


def _class_threshold(found: dict[str, Any], row: dict[str, Any] | None) -> ClassThreshold:
    """One class's threshold: ``row`` of the curve of the validation faces predicted as it (``found``), or None
    where none reaches the target."""
    if row is None:
        return ClassThreshold(None, found["faces"], None, max(r["accuracy"] for r in found["curve"]))
    return ClassThreshold(row["min_confidence"], found["faces"], row["coverage"], row["accuracy"])
