"""What clients reported about a served model, read back from the file ``serve --state-dir`` keeps: expression
accuracy, macro-F1 and recall per class, valence and arousal MAE, over all reports and per period, with a confusion
matrix and a plot over time. The live server only scores its latest window of reports; this reads them all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score

from affectkit.atomic import atomic_path
from affectkit.errors import AffectkitError
from affectkit.evaluation.comparison import markdown_table
from affectkit.evaluation.plots import plot_confusion_matrix, plot_feedback_over_time
from affectkit.inference.predictor import model_metadata
from affectkit.serving.feedback import abstention_scores, latest_test_evaluation, reference_scores
from affectkit.serving.state import read_reports, state_file

PERIODS = {"hour": "h", "day": "D", "week": "W-MON"}


@dataclass(frozen=True)
class FeedbackReport:
    summary: dict[str, Any]
    periods: pd.DataFrame  # one row per period with reports
    files: list[Path]


def _expression_scores(labelled: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    truth, said = labelled["expression"], labelled["said_expression"]
    present = sorted(set(truth) | set(said), key=classes.index)
    abstained = [None if pd.isna(flag) else bool(flag) for flag in labelled["said_abstained"]]
    return {"reports": len(labelled), "accuracy": float((truth == said).mean()),
            "macro_f1": float(f1_score(truth, said, labels=present, average="macro", zero_division=0)),
            "recall": {c: float((said[truth == c] == c).mean()) for c in classes if (truth == c).any()},
            **abstention_scores(truth.to_numpy(), said.to_numpy(), abstained)}


def _period_row(group: pd.DataFrame) -> dict[str, float]:
    labelled = group.dropna(subset=["expression"])
    row = {"reports": len(group), "expression_reports": len(labelled),
           "accuracy": float((labelled["expression"] == labelled["said_expression"]).mean()) if len(labelled)
           else np.nan}
    for name in ("valence", "arousal"):
        given = group.dropna(subset=[name])
        row[f"{name}_mae"] = float((given[name] - given[f"said_{name}"]).abs().mean()) if len(given) else np.nan
    return row


def _markdown(summary: dict[str, Any], periods: pd.DataFrame, state: Path, every: str) -> str:
    lines = [f"# Reported truth about the served model ({summary['model']})", "",
             f"{summary['reports']} reports from {summary['from']} to {summary['to']} (UTC), read from {state.name}.",
             ""]
    if "expression" in summary:
        scores = summary["expression"]
        lines += [f"- Expression: {scores['reports']} reports, accuracy {scores['accuracy']:.3f}, macro-F1 "
                  f"{scores['macro_f1']:.3f}; recall " + ", ".join(f"{c} {r:.2f}" for c, r in scores["recall"].items())]
        if "answered" in scores:
            lines += ["- Of those faces, served with a confidence to abstain below: " + "; ".join(
                f"{part['reports']} {name}" + ("" if part["accuracy"] is None else f", accuracy {part['accuracy']:.3f}")
                for name, part in (("answered", scores["answered"]), ("abstained on", scores["abstained"])))]
    lines += [f"- {name.capitalize()}: {summary[name]['reports']} reports, MAE {summary[name]['mae']:.3f}"
              for name in ("valence", "arousal") if name in summary]
    if "model_test" in summary:
        test = summary["model_test"]
        scores = ([f"accuracy {test['accuracy']:.3f}"] if "accuracy" in test else []) + [
            f"{name} MAE {test[name]:.3f}" for name in ("valence", "arousal") if name in test]
        lines += [f"- The model's own test split ({test.get('data', '?')}, {test.get('n', '?')} faces): "
                  + ", ".join(scores)]
    table = periods.assign(period=periods["period"].dt.strftime("%Y-%m-%d %H:%M")).astype(object).fillna("")
    lines += ["", f"## Per {every}", "", markdown_table(table), "", "![over time](feedback.png)", ""]
    if "expression" in summary:
        lines += ["![confusion](feedback_confusion.png)", ""]
    return "\n".join(lines)


def _model_test(state: Path, model: Path) -> dict[str, Any] | None:
    """The model's own test scores, once ``model`` is checked to be the one whose state ``state`` is."""
    if state_file(state.parent, model).name != state.name:
        raise AffectkitError(f"{state} was written while serving another model than {model} (its name carries the "
                             "served weights' digest).")
    evaluation = latest_test_evaluation(model_metadata(model), model)
    return None if evaluation is None else reference_scores(evaluation)


def feedback_report(state: str | Path, out: str | Path, every: str = "day",
                    model: str | Path | None = None) -> FeedbackReport:
    """Score every report in ``state`` (a file ``serve --state-dir`` wrote) and write ``reports.csv``,
    ``feedback.md``, ``feedback.png`` (per ``every``: hour, day or week) and ``feedback_confusion.png`` to ``out``;
    with ``model`` (the served model), its own test scores beside them."""
    if every not in PERIODS:
        raise AffectkitError(f"--every must be one of {', '.join(PERIODS)}, not {every!r}.")
    state, out = Path(state), Path(out)
    reports, classes = read_reports(state)
    reference = None if model is None else _model_test(state, Path(model))
    if reports.empty:
        raise AffectkitError(f"{state} holds no report of the truth yet (POST /v1/feedback).")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "reports.csv") as tmp:
        reports.to_csv(tmp, index=False)
    summary: dict[str, Any] = {"model": state.stem.rsplit("-", 1)[0], "reports": len(reports),
                               "from": f"{reports['time'].min():%Y-%m-%d %H:%M}",
                               "to": f"{reports['time'].max():%Y-%m-%d %H:%M}"}
    if reference is not None:
        summary["model_test"] = reference
    files = [out / "reports.csv"]
    labelled = reports.dropna(subset=["expression"])
    if len(labelled):
        summary["expression"] = _expression_scores(labelled, classes)
        counts = confusion_matrix(labelled["expression"], labelled["said_expression"], labels=classes)
        files.append(plot_confusion_matrix(counts, classes, out / "feedback_confusion.png",
                                           title="Reported truth (rows) against what the model said"))
    for name in ("valence", "arousal"):
        given = reports.dropna(subset=[name])
        if len(given):
            summary[name] = {"reports": len(given), "mae": float((given[name] - given[f"said_{name}"]).abs().mean())}
    grouped = reports.groupby(pd.Grouper(key="time", freq=PERIODS[every], label="left", closed="left"))  # by start
    periods = pd.DataFrame([{"period": start, **_period_row(group)} for start, group in grouped if len(group)])
    files.append(plot_feedback_over_time(periods, out / "feedback.png"))
    with atomic_path(out / "feedback.md") as tmp:
        tmp.write_text(_markdown(summary, periods, state, every))
    files.append(out / "feedback.md")
    return FeedbackReport(summary, periods, files)
