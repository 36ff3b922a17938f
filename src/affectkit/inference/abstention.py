"""Abstaining on faces a model is unsure of: the expression confidence below which a face is marked ``abstained``,
given as a number or read from the model's accuracy on its validation faces at each confidence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectkit.errors import AffectkitError
from affectkit.models.io import predicts_expression


@dataclass(frozen=True)
class Abstention:
    """Faces whose expression confidence is below ``min_confidence`` are marked ``abstained`` (their most probable
    class and probabilities are still given). Where the threshold was read from the validation faces for
    ``target_accuracy``, ``validation_coverage`` and ``validation_accuracy`` say what it did there."""

    min_confidence: float
    target_accuracy: float | None = None
    validation_coverage: float | None = None  # the share of the validation faces it answered
    validation_accuracy: float | None = None  # the share of those it answered right

    def describe(self) -> str:
        """A phrase: how the threshold was set."""
        if self.target_accuracy is None:
            return f"confidence below {self.min_confidence:.2f} (as asked)"
        return (f"confidence below {self.min_confidence:.2f}, read from the validation faces: answering "
                f"{self.validation_coverage:.0%} of them, {self.validation_accuracy:.1%} right, for "
                f"--target-accuracy {self.target_accuracy:g}")

    def as_dict(self) -> dict[str, Any]:
        return {"min_confidence": self.min_confidence, "target_accuracy": self.target_accuracy,
                "validation_coverage": self.validation_coverage, "validation_accuracy": self.validation_accuracy}


def abstention_for(meta: dict[str, Any], model_path: str | Path, min_confidence: float | None = None,
                   target_accuracy: float | None = None) -> Abstention | None:
    """The abstention asked for a model (its description ``meta``, saved at ``model_path``): a ``min_confidence``
    as given, or the lowest confidence at which the model's validation faces were answered with an accuracy of
    ``target_accuracy`` or more; None where neither is given."""
    # Imported here: metrics loads torchmetrics, which a predictor does not otherwise need.
    from affectkit.evaluation.metrics import MIN_COVERAGE_FACES, threshold_for_accuracy

    if min_confidence is None and target_accuracy is None:
        return None
    if min_confidence is not None and target_accuracy is not None:
        raise AffectkitError("--min-confidence and --target-accuracy both set the confidence to abstain below: give "
                             "one of them.")
    if not predicts_expression(meta):
        raise AffectkitError(f"{model_path} predicts valence and arousal only: it has no expression confidence to "
                             "abstain on (--min-confidence, --target-accuracy).")
    if min_confidence is not None:
        if not 0 < min_confidence <= 1:
            raise AffectkitError(f"--min-confidence must be in (0, 1] (the probability of the most probable class), "
                                 f"got {min_confidence}.")
        return Abstention(float(min_confidence))
    if not 0 < target_accuracy < 1:
        raise AffectkitError(f"--target-accuracy must be in (0, 1) (the share of the answered faces to get right), "
                             f"got {target_accuracy}.")
    recorded = meta.get("validation_coverage")
    if not recorded:
        raise AffectkitError(
            f"{model_path} records no accuracy on its validation faces by confidence, which --target-accuracy reads "
            f"(it was saved without being evaluated, by an affectkit before it recorded it, or with fewer than "
            f"{MIN_COVERAGE_FACES} validation faces with a class): give --min-confidence instead.")
    row = threshold_for_accuracy(recorded["curve"], target_accuracy)
    if row is None:
        best = max(recorded["curve"], key=lambda r: r["accuracy"])
        raise AffectkitError(
            f"{model_path} gets {best['accuracy']:.1%} of its {recorded['faces']} validation faces right at best "
            f"(answering its surest {best['coverage']:.0%}), short of --target-accuracy {target_accuracy:g}: ask "
            "for less, or give --min-confidence.")
    return Abstention(row["min_confidence"], target_accuracy, row["coverage"], row["accuracy"])
