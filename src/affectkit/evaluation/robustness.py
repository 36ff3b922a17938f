"""How a model's scores move when its faces come corrupted (``data.corruptions``): each corruption's scores beside
the clean faces', and the change from clean with its interval and test. The comparison is paired (the same faces,
clean and corrupted), so what the model gets right or wrong either way does not widen the interval; where the data
says who is who, the bootstrap draws people."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from affectkit.config import NO_EXPRESSION
from affectkit.data.corruptions import CORRUPTIONS
from affectkit.evaluation.comparison import markdown_table, table_number
from affectkit.evaluation.evaluator import Predictions
from affectkit.evaluation.metrics import expected_calibration_error
from affectkit.evaluation.significance import (
    CONFIDENCE,
    ccc_score,
    paired_ccc_comparison,
    paired_comparison,
    point_scores,
    score_intervals,
)

CLEAN = "none"  # the corruption column of the clean faces' row


@dataclass(frozen=True)
class Corrupted:
    """The saved model's predictions of the faces under one corruption at one severity."""

    corruption: str
    severity: int
    setting: str  # how the severity reads: "JPEG quality 15"
    predictions: Predictions


def _expression_scores(labels: np.ndarray, groups: np.ndarray | None, clean: Predictions,
                       pred: Predictions) -> dict[str, object]:
    classed = labels != NO_EXPRESSION
    predicted = pred.probs.argmax(axis=1)
    scores: dict[str, object] = dict(point_scores(labels, predicted))
    low, high = score_intervals(labels, predicted, groups)["accuracy"]
    scores |= {"accuracy_low": low, "accuracy_high": high,
               "ece": expected_calibration_error(pred.probs[classed], labels[classed])}
    if pred is not clean:
        change = paired_comparison(labels, predicted, clean.probs.argmax(axis=1), groups)
        scores |= {"accuracy_change": change.difference, "accuracy_change_low": change.low,
                   "accuracy_change_high": change.high, "p_value": change.p_value, "verdict": change.verdict()}
    return scores


def _valence_arousal_scores(truth: np.ndarray, groups: np.ndarray | None, clean: Predictions,
                            pred: Predictions) -> dict[str, object]:
    scores: dict[str, object] = {"valence_ccc": ccc_score(pred.valence_arousal[:, 0], truth[:, 0]),
                                 "arousal_ccc": ccc_score(pred.valence_arousal[:, 1], truth[:, 1])}
    if pred is not clean:
        change = paired_ccc_comparison(truth, pred.valence_arousal, clean.valence_arousal, groups)
        scores |= {"ccc_change": change.difference, "ccc_change_low": change.low, "ccc_change_high": change.high,
                   "ccc_verdict": change.verdict()}
    return scores


def robustness_table(labels: np.ndarray, valence_arousal: np.ndarray, groups: np.ndarray | None,
                     clean: Predictions, corrupted: Sequence[Corrupted]) -> pd.DataFrame:
    """One row for the clean faces, then one per corruption and severity: accuracy (with its interval), macro-F1,
    balanced accuracy and ECE of the faces with a class, the valence and arousal CCC of those annotated with them
    (where the model predicts them), and, for a corrupted row, its change from clean: accuracy (the paired bootstrap
    interval, McNemar's exact p-value and the verdict: "worse" where the corruption costs accuracy these faces
    can tell) and mean CCC. ``groups``: each face's person, where known."""
    scores_expression = clean.predicts_expression and bool((labels != NO_EXPRESSION).any())
    scores_va = clean.predicts_valence_arousal and int(np.isfinite(valence_arousal).all(axis=1).sum()) >= 3
    rows = []
    for corruption, severity, setting, pred in [(CLEAN, 0, "as given", clean),
                                                *((c.corruption, c.severity, c.setting, c.predictions)
                                                  for c in corrupted)]:
        row: dict[str, object] = {"corruption": corruption, "severity": severity, "setting": setting,
                                  "faces": len(labels)}
        if scores_expression:
            row |= _expression_scores(labels, groups, clean, pred)
        if scores_va:
            row |= _valence_arousal_scores(valence_arousal, groups, clean, pred)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Headline:
    """The score a robustness table is summed up by: accuracy where the model was scored on classes, else the mean
    of the valence and arousal CCCs."""

    name: str  # "accuracy" or "mean CCC"
    values: pd.Series  # one per row of the table
    change: str  # the prefix of its change-from-clean columns


def headline(table: pd.DataFrame) -> Headline | None:
    """The :class:`Headline` of a :func:`robustness_table`; None where it scored neither classes nor
    valence/arousal."""
    if "accuracy" in table:
        return Headline("accuracy", table["accuracy"].astype(float), "accuracy_change")
    if "valence_ccc" in table:
        return Headline("mean CCC", table[["valence_ccc", "arousal_ccc"]].astype(float).mean(axis=1), "ccc_change")
    return None


def hardest(table: pd.DataFrame) -> pd.Series | None:
    """The corrupted row that costs the most (accuracy, else mean CCC), or None without a corrupted row."""
    corrupted = table[table["corruption"] != CLEAN]
    if corrupted.empty or (summary := headline(table)) is None:
        return None
    return corrupted.loc[corrupted[summary.change].astype(float).idxmin()]


def robustness_entry(table: pd.DataFrame, data: str, split: str, synthetic: bool) -> dict[str, object]:
    """What the model card keeps of a :func:`robustness_table` that scored classes or valence/arousal: per corrupted
    row, the :func:`headline` score, its change from clean with the interval, and the verdict."""
    summary = headline(table)
    prefix = summary.change
    verdict = "verdict" if prefix == "accuracy_change" else "ccc_verdict"
    rows = [{"corruption": row["corruption"], "severity": int(row["severity"]), "setting": row["setting"],
             "score": float(summary.values[i]), "change": float(row[prefix]), "low": float(row[f"{prefix}_low"]),
             "high": float(row[f"{prefix}_high"]), "verdict": row[verdict]}
            for i, row in table.iterrows() if row["corruption"] != CLEAN]
    return {"data": data, "split": split, "synthetic": synthetic, "faces": int(table["faces"].iloc[0]),
            "score": summary.name, "clean": float(summary.values.iloc[0]), "rows": rows}


def _change_cell(row: pd.Series, prefix: str) -> str:
    if pd.isna(row.get(prefix)):
        return ""
    return f"{row[prefix]:+.3f} [{row[f'{prefix}_low']:+.3f}, {row[f'{prefix}_high']:+.3f}]"


def robustness_cells(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`robustness_table` as people read it: a score with its interval, the change from clean with its
    interval and verdict, three decimals."""
    shown = pd.DataFrame({"corruption": table["corruption"], "severity": table["severity"],
                          "setting": table["setting"]})
    if "accuracy" in table:
        shown["accuracy [95% interval]"] = [
            f"{table_number(r.accuracy, 3)} [{table_number(r.accuracy_low, 3)}, {table_number(r.accuracy_high, 3)}]"
            for r in table.itertuples()]
        shown["change from clean"] = [_change_cell(row, "accuracy_change") for _, row in table.iterrows()]
        shown["verdict"] = table["verdict"].fillna("") if "verdict" in table else ""
        shown["macro-F1"] = [table_number(v, 3) for v in table["macro_f1"]]
        shown["ECE"] = [table_number(v, 3) for v in table["ece"]]
    for dimension in ("valence", "arousal"):
        if f"{dimension}_ccc" in table:
            shown[f"{dimension} CCC"] = [table_number(v, 3) for v in table[f"{dimension}_ccc"]]
    if "ccc_change" in table:
        shown["mean CCC change"] = [_change_cell(row, "ccc_change") for _, row in table.iterrows()]
        shown["CCC verdict"] = table["ccc_verdict"].fillna("")
    return shown


def remedies(table: pd.DataFrame) -> list[str]:
    """A sentence for each training option that draws faces like those of a corruption the model did worse on
    (:attr:`Corruption.remedy`), naming those corruptions; none where no loss is told from chance."""
    verdicts = [column for column in ("verdict", "ccc_verdict") if column in table]
    worse = table.loc[(table[verdicts] == "worse").any(axis=1), "corruption"] if verdicts else []
    by_remedy: dict[str, list[str]] = {}
    for name in dict.fromkeys(worse):
        if (corruption := CORRUPTIONS.get(name)) is not None and corruption.remedy is not None:
            by_remedy.setdefault(corruption.remedy, []).append(name)
    return [f"For faces like these ({', '.join(names)}): train with `--set {remedy}`, then measure again (clean "
            "faces may lose a little)." for remedy, names in by_remedy.items()]


def robustness_markdown(table: pd.DataFrame, about: Sequence[str]) -> str:
    """``robustness.md``: ``about`` (lines saying which model, data and faces), the table, and how to read it."""
    shown = robustness_cells(table)
    lines = ["# Robustness to corrupted faces", "", *about, "", markdown_table(shown), ""]
    lines.append(f"Change from clean: the corrupted faces' score minus the same faces' clean score, with its "
                 f"{CONFIDENCE:.0%} paired bootstrap interval. Verdict: McNemar's exact test on the faces the model "
                 "gets right one way only (and, where faces were drawn by person, an interval that leaves out 0); "
                 "\"worse\" is a loss these faces can tell from chance.")
    if (row := hardest(table)) is not None:
        summary = headline(table)
        lines += ["", f"Hardest here: {row['corruption']} at severity {row['severity']} ({row['setting']}), "
                      f"{row[summary.change]:+.3f} {summary.name}."]
    if advice := remedies(table):
        lines += ["", *advice]
    return "\n".join(lines) + "\n"


__all__ = ["CLEAN", "Corrupted", "Headline", "hardest", "headline", "remedies", "robustness_cells",
           "robustness_entry", "robustness_markdown", "robustness_table"]
