"""Performance tracking on live traffic: clients who learn the truth about a face they sent (a user's correction, a
later annotation) report it against the prediction's id, and the server keeps the accuracy and valence/arousal
error of the latest reports beside the model's own test scores.

Only the most recent predictions are remembered (their class, valence and arousal: never the image), so a report
must come while its prediction is among them. With a :class:`~affectkit.serving.state.ServingState` they and the
reports outlive the server process.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.data.records import class_from_name
from affectkit.errors import AffectkitError, KindedError
from affectkit.models.metadata import is_export
from affectkit.serving.state import ServingState

DEFAULT_REMEMBERED = 10_000
DEFAULT_WINDOW = 1000


def latest_test_evaluation(meta: dict[str, Any], served: str | Path | None = None) -> dict[str, Any] | None:
    """The latest evaluation on a test split a model's metadata records of the file ``served`` (a model's path): an
    export's own (``affectkit evaluate model.int8.onnx``) where it has one, else the weights'; None where none."""
    export = Path(served).name if served is not None and is_export(served) else None
    tests = [e for e in meta.get("evaluations", []) if e.get("split") == "test"]
    own = [e for e in tests if e.get("export") == export] or [e for e in tests if e.get("export") is None]
    return own[-1] if own else None


def reference_scores(evaluation: dict[str, Any]) -> dict[str, Any]:
    """What reports are compared with: the data, faces and accuracy of a test evaluation, its valence/arousal MAE."""
    # None where the test faces had no class (or the model predicts none), or no valence/arousal: left out.
    return {k: evaluation[k] for k in ("data", "n", "accuracy") if evaluation.get(k) is not None} | {
        name: evaluation[name]["mae"] for name in ("valence", "arousal") if evaluation.get(name)}


def abstention_scores(truth: np.ndarray, said: np.ndarray, abstained: Sequence[bool | None]) -> dict[str, Any]:
    """The accuracy of the reported faces the server ``answered`` and of those it ``abstained`` on (each with its
    count of reports; None where there are none); empty where no report's face was served with a threshold."""
    served_with = np.array([flag is not None for flag in abstained])
    if not served_with.any():
        return {}
    held_back = np.array([bool(flag) for flag in abstained])
    out = {}
    for name, faces in (("answered", served_with & ~held_back), ("abstained", held_back)):
        out[name] = {"reports": int(faces.sum()),
                     "accuracy": float((truth[faces] == said[faces]).mean()) if faces.any() else None}
    return out


class FeedbackError(KindedError):
    """A report that cannot be used: ``kind`` "unknown" (no such prediction remembered), "duplicate" or "invalid"."""


@dataclass(frozen=True)
class _Said:
    expression: int
    valence: float
    arousal: float
    abstained: bool | None = None  # None where the server abstains on no face


@dataclass(frozen=True)
class _Report:
    said: _Said
    expression: int | None
    valence: float
    arousal: float


class FeedbackTracker:
    """Gives every face served a ``prediction_id``, remembers the last ``remembered`` of them and scores the last
    ``window`` reports of the truth; with ``state``, starts from what it holds and writes everything through to it."""

    def __init__(self, class_names: Sequence[str], remembered: int = DEFAULT_REMEMBERED, window: int = DEFAULT_WINDOW,
                 reference: dict[str, Any] | None = None, state: ServingState | None = None,
                 valence_arousal: bool = True):
        if remembered < 1 or window < 1:
            raise AffectkitError("--remembered-predictions and --feedback-window must be at least 1.")
        self.class_names = list(class_names)
        self.valence_arousal = valence_arousal  # False: an expression model, which says no valence or arousal
        self.reference = reference  # the model's latest test evaluation, where it has one
        self._said: OrderedDict[str, _Said | None] = OrderedDict()  # None once reported
        self._remembered = remembered
        self._reports: deque[_Report] = deque(maxlen=window)
        self._total = 0
        self._lock = threading.Lock()
        self._state = state
        if state is not None:
            self._restore(state)

    def _said_as(self, expression: str | None, valence: float | None, arousal: float | None,
                 abstained: bool | None = None) -> _Said:
        # A valence/arousal model said no expression (None when served, "" once stored): -1; an expression model no
        # valence or arousal (None when served): 0, never scored (reports of them are refused).
        return _Said(self.class_names.index(expression) if expression else -1, float(valence or 0.0),
                     float(arousal or 0.0), abstained)

    def _restore(self, state: ServingState) -> None:
        for prediction_id, said, reported in state.remembered()[-self._remembered:]:
            self._said[prediction_id] = None if reported else self._said_as(*said)
        reports, self._total = state.reports(self._reports.maxlen)
        for said, expression, valence, arousal in reports:
            self._reports.append(_Report(self._said_as(*said), self._class(expression),
                                         math.nan if valence is None else valence,
                                         math.nan if arousal is None else arousal))

    def remember(self, faces: Sequence[dict[str, Any]]) -> None:
        """Give each face (a served result, changed in place) a ``prediction_id`` and remember what was said of it."""
        with self._lock:
            said = [self._said_as(f["expression"], f["valence"], f["arousal"], f.get("abstained")) for f in faces]
            for face, what in zip(faces, said):
                face["prediction_id"] = uuid.uuid4().hex
                self._said[face["prediction_id"]] = what
                if len(self._said) > self._remembered:
                    self._said.popitem(last=False)
            if self._state is not None:
                self._state.add_predictions([(f["prediction_id"], (f["expression"] or "", s.valence, s.arousal,
                                                                   s.abstained)) for f, s in zip(faces, said)])

    def _class(self, expression: str | int | None) -> int | None:
        if expression is None:
            return None
        if isinstance(expression, int) or str(expression).strip().isdigit():
            label = int(expression)
            return label if 0 <= label < len(self.class_names) else None
        lowered = {name.lower(): i for i, name in enumerate(self.class_names)}
        name = str(expression).strip().lower()
        return lowered[name] if name in lowered else class_from_name(name)

    def record(self, prediction_id: str, expression: str | int | None = None, valence: float | None = None,
               arousal: float | None = None) -> None:
        """The truth about one served face. Raises FeedbackError for an unknown or already reported prediction or a
        report that says nothing usable; StateError where the state file cannot store it."""
        if expression is not None and not self.class_names:
            raise FeedbackError("invalid", "the served model predicts valence and arousal only: report those")
        if (valence is not None or arousal is not None) and not self.valence_arousal:
            raise FeedbackError("invalid", "the served model predicts expressions only (no face it was trained on "
                                           "had valence or arousal): report the expression")
        label = self._class(expression)
        if expression is not None and label is None:
            raise FeedbackError("invalid", f"expression {expression!r} is not one of {', '.join(self.class_names)}")
        if label is None and valence is None and arousal is None:
            raise FeedbackError("invalid", "a report gives an expression, a valence or an arousal")
        for name, value in (("valence", valence), ("arousal", arousal)):
            if value is not None and not -1.0 <= value <= 1.0:
                raise FeedbackError("invalid", f"{name} {value:g} is outside [-1, 1]")
        with self._lock:
            if prediction_id not in self._said:
                raise FeedbackError("unknown", f"prediction {prediction_id!r} is not among the last "
                                               f"{self._remembered:,} predictions (unknown, or too old)")
            said = self._said[prediction_id]
            if said is None:
                raise FeedbackError("duplicate", f"prediction {prediction_id!r} was reported already")
            if self._state is not None:  # first: a report it cannot store is not taken
                stored_said = (self.class_names[said.expression] if self.class_names else "", said.valence,
                               said.arousal, said.abstained)
                truth = None if label is None else self.class_names[label]
                self._state.add_report(prediction_id, (stored_said, truth, valence, arousal))
            self._said[prediction_id] = None
            self._reports.append(_Report(said, label, math.nan if valence is None else valence,
                                         math.nan if arousal is None else arousal))
            self._total += 1

    def summary(self) -> dict[str, Any]:
        """Scores of the latest reports: expression accuracy and recall per class, valence and arousal MAE; and the
        model's own test scores for comparison."""
        with self._lock:
            reports = list(self._reports)
            total = self._total
        out: dict[str, Any] = {"reports": total, "window": len(reports), "window_size": self._reports.maxlen}
        labelled = [r for r in reports if r.expression is not None]
        if labelled:
            truth = np.array([r.expression for r in labelled])
            said = np.array([r.said.expression for r in labelled])
            out["expression"] = {
                "reports": len(labelled), "accuracy": float((truth == said).mean()),
                "recall": {self.class_names[c]: float((said[truth == c] == c).mean()) for c in np.unique(truth)},
                **abstention_scores(truth, said, [r.said.abstained for r in labelled]),
            }
        for name in ("valence", "arousal"):
            pairs = [(getattr(r, name), getattr(r.said, name)) for r in reports if not math.isnan(getattr(r, name))]
            if pairs:
                out[name] = {"reports": len(pairs), "mae": float(np.mean([abs(t - s) for t, s in pairs]))}
        if self.reference is not None:
            out["model_test"] = reference_scores(self.reference)
        return out

    def render(self) -> list[str]:
        """Prometheus: reports received; accuracy and MAE of the window, once it has reports."""
        summary = self.summary()
        lines = ["# HELP affectkit_feedback_reports_total Reports of the truth about served faces.",
                 "# TYPE affectkit_feedback_reports_total counter", f"affectkit_feedback_reports_total {summary['reports']}"]
        gauges = []
        if "expression" in summary:
            gauges.append(("affectkit_feedback_accuracy", "Expression accuracy over the latest reports.",
                           summary["expression"]["accuracy"]))
        if "answered" in summary.get("expression", {}):
            gauges.append(("affectkit_feedback_answered_accuracy", "Expression accuracy over the latest reports of "
                           "faces not abstained on.", summary["expression"]["answered"]["accuracy"]))
        for name in ("valence", "arousal"):
            if name in summary:
                gauges.append((f"affectkit_feedback_{name}_mae", f"{name.capitalize()} MAE over the latest reports.",
                               summary[name]["mae"]))
        for metric, help_text, value in gauges:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge", f"{metric} {value!r}"]
        return lines
