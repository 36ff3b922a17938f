"""Expression and valence/arousal metrics and calibration measures.

Every score is accumulated by torchmetrics objects, whose states are synchronised across processes on
``compute()``, so the numbers are right under distributed evaluation as well as on one process.

Correlation conventions: PCC and CCC use sample (N - 1) moments, as torchmetrics' ``PearsonCorrCoef`` and
``ConcordanceCorrCoef`` do; the training loss :func:`affectkit.training.losses.ccc_loss` uses the same moments, so
it is exactly ``1 - CCC`` as reported. A correlation is undefined when the predictions (or targets) are constant;
it is then reported as 0 ("no linear agreement") instead of NaN, so a collapsed model scores 0, not a crash. (A
constant that float32 cannot represent exactly, such as 0.1, leaves rounding noise in the variance; its
correlation then comes out within about 1e-8 of 0 rather than exactly 0.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import Tensor
from torch.nn import ModuleDict
from torchmetrics import (
    ConcordanceCorrCoef,
    MeanAbsoluteError,
    MeanMetric,
    MeanSquaredError,
    MetricCollection,
    PearsonCorrCoef,
    SumMetric,
)
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)
from torchmetrics.functional.classification import multiclass_calibration_error
from torchmetrics.wrappers.abstract import WrapperMetric

from affectkit.config import CLASS_NAMES, NO_EXPRESSION

VA_DIMENSIONS = ("valence", "arousal")
ECE_BINS = 15
# How far a row of "probabilities" may be from summing to 1 before we conclude they are logits.
_PROBS_SUM_TOLERANCE = 1e-3
# The least probability a log-loss charges for, so that one face given (almost) none for its class costs
# -log(1e-12) ~ 27.6 rather than infinity. Every log-loss the project reports or chooses by uses it.
LOG_LOSS_FLOOR = 1e-12
_ZERO_VARIANCE_WARNING = "The variance of predictions or target is close to zero"
_NO_UPDATE_WARNING = ".*was called before the ``update`` method"


def _correlation_or_zero(value: Tensor) -> float:
    """An undefined correlation (constant input, fewer than two samples) is reported as 0."""
    value = float(value)
    return value if math.isfinite(value) else 0.0


def _row_normalised(counts: Tensor) -> Tensor:
    """Each row divided by its total; a row without samples is all zeros, and 0 / 1 keeps it so instead of 0 / 0."""
    return counts / counts.sum(dim=1, keepdim=True).clamp_min(1)


def _check_probs(probs: Tensor) -> None:
    rows_sum_to_one = torch.allclose(probs.sum(dim=1), torch.ones((), dtype=probs.dtype, device=probs.device),
                                     atol=_PROBS_SUM_TOLERANCE)
    if not (rows_sum_to_one and bool((probs >= 0).all())):
        raise ValueError("AffectMetrics(inputs='probs') got rows that are not probability distributions; "
                         "pass inputs='logits' for raw model outputs.")


class _RegressionMetrics(WrapperMetric):
    """Scores of one valence/arousal dimension over the records that carry a label (finite target)."""

    def __init__(self, sync_on_compute: bool) -> None:
        super().__init__()
        sync = {"sync_on_compute": sync_on_compute}
        self.scores = MetricCollection({
            "mse": MeanSquaredError(**sync),
            "mae": MeanAbsoluteError(**sync),
            "pcc": PearsonCorrCoef(**sync),
            "ccc": ConcordanceCorrCoef(**sync),
        })
        self.sign_agreement = MeanMetric(**sync)
        self.count = SumMetric(**sync)

    def update(self, pred: Tensor, target: Tensor) -> None:
        labelled = torch.isfinite(target)
        # Counted even when zero, so that compute() can answer None for 'nothing labelled' without warnings.
        self.count.update(labelled.sum())
        if not bool(labelled.any()):
            return
        pred, target = pred[labelled].float(), target[labelled].float()
        self.scores.update(pred, target)
        self.sign_agreement.update((torch.sign(pred) == torch.sign(target)).float())

    def compute(self) -> dict | None:
        n = int(self.count.compute())
        if n == 0:
            return None
        with warnings.catch_warnings():
            # Both are expected: constant predictions (handled by _correlation_or_zero), and a process that
            # saw no labelled record while others did (its states are the neutral starting ones).
            warnings.filterwarnings("ignore", message=_ZERO_VARIANCE_WARNING)
            warnings.filterwarnings("ignore", message=_NO_UPDATE_WARNING)
            scores = self.scores.compute()
            sign_agreement = float(self.sign_agreement.compute())
        mse = float(scores["mse"])
        return {
            "mse": mse,
            "mae": float(scores["mae"]),
            "rmse": math.sqrt(mse),
            "pcc": _correlation_or_zero(scores["pcc"]),
            "ccc": _correlation_or_zero(scores["ccc"]),
            "sagr": sign_agreement,
            "n": n,
        }

    def reset(self) -> None:
        for metric in (self.scores, self.sign_agreement, self.count):
            metric.reset()
        super().reset()


class AffectMetrics(WrapperMetric):
    """Every expression and valence/arousal score of the evaluation report, accumulated over batches.

    ``inputs`` says whether ``update`` receives class probabilities or logits; probabilities are checked
    (non-negative, rows summing to 1) so that logits passed by mistake fail loudly instead of skewing the NLL.
    ``compute`` merges the states of all processes of an initialised process group; pass
    ``sync_on_compute=False`` when this process already holds every record (otherwise it would wait for the
    other processes). Call ``update`` per batch and ``compute`` once; ``forward`` is not supported.
    """

    def __init__(self, inputs: Literal["probs", "logits"], class_names: Sequence[str] = CLASS_NAMES,
                 n_bins: int = ECE_BINS, sync_on_compute: bool = True) -> None:
        super().__init__()
        if inputs not in ("probs", "logits"):
            raise ValueError(f"inputs must be 'probs' or 'logits', not {inputs!r}")
        self.inputs = inputs
        self.class_names = tuple(class_names)
        k = len(self.class_names)
        sync = {"sync_on_compute": sync_on_compute}
        self.expression = MetricCollection({
            "accuracy": MulticlassAccuracy(k, top_k=1, average="micro", **sync),
            "top2_accuracy": MulticlassAccuracy(k, top_k=2, average="micro", **sync),
            "top3_accuracy": MulticlassAccuracy(k, top_k=3, average="micro", **sync),
            "macro_f1": MulticlassF1Score(k, average="macro", **sync),
            "precision": MulticlassPrecision(k, average="none", **sync),
            "recall": MulticlassRecall(k, average="none", **sync),
            "f1": MulticlassF1Score(k, average="none", **sync),
            "confusion_matrix": MulticlassConfusionMatrix(k, **sync),
            "ece": MulticlassCalibrationError(k, n_bins=n_bins, norm="l1", **sync),
        })
        self.nll = MeanMetric(**sync)
        self.faces = SumMetric(**sync)
        self.classed = SumMetric(**sync)
        self.valence_arousal = ModuleDict({dim: _RegressionMetrics(sync_on_compute) for dim in VA_DIMENSIONS})

    def update(self, expression: Tensor, expression_target: Tensor, va_pred: Tensor, va_target: Tensor) -> None:
        """``expression`` [N, C] probabilities or logits, ``expression_target`` [N] class ids (NO_EXPRESSION where
        a face has none: the expression scores leave it out), ``va_pred`` / ``va_target`` [N, 2] (valence, arousal),
        the target NaN where not annotated."""
        expression = expression.float()
        if self.inputs == "probs":
            _check_probs(expression)
            probs = expression
            log_probs = expression.clamp_min(LOG_LOSS_FLOOR).log()
        else:
            log_probs = F.log_softmax(expression, dim=1)
            probs = log_probs.exp()
            log_probs = log_probs.clamp_min(math.log(LOG_LOSS_FLOOR))
        expression_target = expression_target.long()
        self.faces.update(len(expression_target))
        with_class = expression_target != NO_EXPRESSION
        self.classed.update(with_class.sum())
        if with_class.any():
            probs, log_probs, expression_target = (probs[with_class], log_probs[with_class],
                                                   expression_target[with_class])
            # Probabilities for all of them: MulticlassCalibrationError would otherwise guess whether to softmax.
            self.expression.update(probs, expression_target)
            self.nll.update(F.nll_loss(log_probs, expression_target, reduction="none"))
        for column, dim in enumerate(VA_DIMENSIONS):
            self.valence_arousal[dim].update(va_pred[:, column], va_target[:, column])

    def compute(self) -> dict:
        """The scores; ``expression`` is None where no face had a class (a set annotated for valence/arousal only)."""
        faces = int(self.faces.compute())
        va = {dim: self.valence_arousal[dim].compute() for dim in VA_DIMENSIONS}
        if int(self.classed.compute()) == 0:
            return {"n": faces, "expression": None, **va}
        scores = self.expression.compute()
        counts = scores["confusion_matrix"]
        support = counts.sum(dim=1)
        recall = scores["recall"]
        per_class = {
            name: {"precision": float(scores["precision"][i]), "recall": float(recall[i]),
                   "f1": float(scores["f1"][i]), "support": int(support[i])}
            for i, name in enumerate(self.class_names)
        }
        expression = {
            "n": int(support.sum()),  # the faces with a class; the others count for valence/arousal only
            "accuracy": float(scores["accuracy"]),
            "top2_accuracy": float(scores["top2_accuracy"]),
            "top3_accuracy": float(scores["top3_accuracy"]),
            "macro_f1": float(scores["macro_f1"]),
            # Mean recall over the classes present in the targets, as sklearn's balanced_accuracy_score.
            "balanced_accuracy": float(recall[support > 0].mean()),
            "confusion_matrix": counts.tolist(),
            "confusion_matrix_normalized": _row_normalised(counts).tolist(),
            "per_class": per_class,
            "nll": float(self.nll.compute()),
            "ece": float(scores["ece"]),
        }
        return {"n": faces, "expression": expression, **va}

    def reset(self) -> None:
        self.expression.reset()
        self.nll.reset()
        self.faces.reset()
        self.classed.reset()
        for metrics in self.valence_arousal.values():
            metrics.reset()
        super().reset()


def expression_score(metrics: dict, key: str) -> float:
    """One of the expression scores of ``metrics``; NaN where no face had a class."""
    expression = metrics["expression"]
    return float("nan") if expression is None else expression[key]


def log_loss(probs: ArrayLike, labels: ArrayLike) -> float:
    """The mean negative log-probability that ``probs`` [N, C] give the classes ``labels`` [N] (each probability
    taken as at least ``LOG_LOSS_FLOOR``); NaN for no rows."""
    probs, labels = np.asarray(probs), np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return math.nan
    picked = probs[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, LOG_LOSS_FLOOR, None)).mean())


def compute_metrics(probs: ArrayLike, exp_true: ArrayLike, va_pred: ArrayLike, va_true: ArrayLike) -> dict:
    """:class:`AffectMetrics` on in-memory numpy predictions: ``probs`` [N, C], ``exp_true`` [N],
    ``va_pred`` / ``va_true`` [N, 2] with NaN targets where valence/arousal is not annotated.

    The arrays hold every record, so nothing is synced, even inside a process group (e.g. on rank 0 after DDP).
    """
    metrics = AffectMetrics(inputs="probs", sync_on_compute=False)
    metrics.update(
        torch.as_tensor(np.asarray(probs, dtype=np.float32)),
        torch.as_tensor(np.asarray(exp_true, dtype=np.int64)),
        torch.as_tensor(np.asarray(va_pred, dtype=np.float32)),
        torch.as_tensor(np.asarray(va_true, dtype=np.float32)),
    )
    return metrics.compute()


COLLAPSE_SHARE = 0.9  # of the faces given one class, where fewer than COLLAPSE_TRUE_SHARE of them have it
COLLAPSE_TRUE_SHARE = 0.7


def prior_collapse(expression: dict | None, class_names: Sequence[str]) -> str | None:
    """A sentence where a model gives one class to nearly every face although the faces' classes are mixed (it
    learnt the class frequencies, not the faces: the usual failure of a short training from scratch on a small,
    skewed set); None otherwise or where ``expression`` (the scores' ``expression`` part) is None."""
    if not expression:
        return None
    counts = np.asarray(expression["confusion_matrix"])
    faces = counts.sum()
    given, truth = counts.sum(axis=0), counts.sum(axis=1)
    top = int(given.argmax())
    if faces == 0 or given[top] < COLLAPSE_SHARE * faces or truth[top] >= COLLAPSE_TRUE_SHARE * faces:
        return None
    return (f"gives {class_names[top]} to {given[top] / faces:.0%} of the faces though {truth[top] / faces:.0%} of "
            f"them are {class_names[top]}: it learnt the class frequencies, not the faces. A pretrained start and a "
            "longer fine-tuning (--profile recommended), or class-balanced training (--profile imbalanced), usually "
            "cure it.")


def unlearnt_classes(expression: dict | None, trained: Sequence[str],
                     class_names: Sequence[str]) -> dict[str, Any] | None:
    """Where scored faces are of classes a model never learnt (absent from its training data; it gives them
    probability 0, so they always count as errors): how many of each, and the accuracy on the other faces. None where
    there are none, or where ``expression`` (the scores' ``expression`` part) is None."""
    if not expression:
        return None
    counts = np.asarray(expression["confusion_matrix"])
    truth = counts.sum(axis=1)
    absent = [i for i, name in enumerate(class_names) if name not in trained and truth[i] > 0]
    if not absent:
        return None
    learnt = [i for i in range(len(class_names)) if i not in absent]
    faces = int(truth[learnt].sum())
    return {"faces": {class_names[i]: int(truth[i]) for i in absent}, "other_faces": faces,
            "accuracy_on_learnt_classes": float(counts[learnt, learnt].sum() / faces) if faces else None}


def unlearnt_note(unlearnt: dict[str, Any]) -> str:
    """The sentence for :func:`unlearnt_classes`'s finding."""
    absent = ", ".join(f"{name} {count}" for name, count in unlearnt["faces"].items())
    accuracy = unlearnt["accuracy_on_learnt_classes"]
    rest = "" if accuracy is None else f"; on the other {unlearnt['other_faces']} faces its accuracy is {accuracy:.3f}"
    return (f"{sum(unlearnt['faces'].values())} faces are of classes the model never learnt ({absent}: absent from its "
            f"training data); they count as errors{rest}.")


def expected_calibration_error(probs: ArrayLike | Tensor, targets: ArrayLike | Tensor, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE over ``n_bins`` equal-width confidence bins (torchmetrics' definition, L1 norm)."""
    probs = torch.as_tensor(np.asarray(probs, dtype=np.float32))
    targets = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    return float(multiclass_calibration_error(probs, targets, num_classes=probs.shape[1], n_bins=n_bins, norm="l1"))


def reliability_curve(probs: ArrayLike, targets: ArrayLike,
                      n_bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean confidence, accuracy and sample count of the top-1 prediction per equal-width confidence bin.

    Bins are [k/n, (k+1)/n) as in torchmetrics; empty bins have confidence and accuracy 0 (see the counts).
    Unlike torchmetrics, which keeps a confidence of exactly 1.0 in a bin of its own, it goes to the last bin.
    """
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(targets)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    occupied = count > 0
    mean_confidence = np.divide(np.bincount(bins, weights=confidence, minlength=n_bins), count,
                                out=np.zeros(n_bins), where=occupied)
    accuracy = np.divide(np.bincount(bins, weights=correct, minlength=n_bins), count,
                         out=np.zeros(n_bins), where=occupied)
    return mean_confidence, accuracy, count

