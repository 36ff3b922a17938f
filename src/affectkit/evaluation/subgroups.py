"""Scores by group of faces: how a model does on each value of an attribute the faces carry (gender, age band,
ethnicity, head pose, glasses, a recording condition), each score with its bootstrap interval, and the gap between the
groups it does best and worst on, with the interval of that difference.

An average hides the people a model fails: one accurate on 0.80 of all faces may be right on 0.85 of one group's
and 0.65 of another's. How far groups are told apart depends on their faces: the bootstrap draws people where the
data says who is who, and a group of a few faces is listed but not ranked for the gap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from affectkit.config import NO_EXPRESSION
from affectkit.data.face_tables import NOT_GIVEN, attribute_file_stem, group_order
from affectkit.evaluation.comparison import markdown_table, table_number
from affectkit.evaluation.significance import CONFIDENCE, GroupGap, ccc_score, group_gap, point_scores, score_intervals

MIN_GROUP_FACES = 20  # classed faces a group needs to be ranked for the gap: below it, its accuracy is mostly chance
SCORES = ("accuracy", "macro_f1", "balanced_accuracy")


def resampled_units(people: ArrayLike | None) -> str:
    """What a bootstrap over faces of ``people`` draws, in words: "faces", or "people (12), each with all their
    faces"."""
    return "faces" if people is None else f"people ({len(set(people))}), each with all their faces"


def group_scores(values: ArrayLike, labels: ArrayLike | None = None, predicted: ArrayLike | None = None,
                 people: ArrayLike | None = None, va_predicted: ArrayLike | None = None,
                 va_truth: ArrayLike | None = None) -> pd.DataFrame:
    """One row per group (each value of ``values``, one per face), in the order of their names: its faces, those with
    a class, its people (where ``people`` says who is who), and, where ``predicted`` classes are given, accuracy with
    its bootstrap interval (people drawn, where known), macro-F1 and balanced accuracy; where ``va_predicted`` and
    ``va_truth`` ((N, 2)) are given, the valence and arousal CCC."""
    values = np.asarray(values, dtype=object)
    labels = np.full(len(values), NO_EXPRESSION) if labels is None else np.asarray(labels)
    people = None if people is None else np.asarray(people, dtype=object)
    rows = []
    for group in sorted(set(values), key=group_order):
        mask = values == group
        row = {"group": group, "faces": int(mask.sum()), "classed_faces": int((labels[mask] != NO_EXPRESSION).sum())}
        if people is not None:
            row["people"] = len(set(people[mask]))
        if predicted is not None:
            predicted_here = np.asarray(predicted)[mask]
            scores = point_scores(labels[mask], predicted_here)
            drawn = mask.sum() if people is None else row["people"]  # one person's faces: no spread to draw
            low, high = (score_intervals(labels[mask], predicted_here, None if people is None else people[mask])
                         .get("accuracy", (np.nan,) * 2) if drawn > 1 else (np.nan, np.nan))
            row |= {"accuracy": scores.get("accuracy", np.nan), "accuracy_low": low, "accuracy_high": high,
                    **{score: scores.get(score, np.nan) for score in SCORES[1:]}}
        if va_predicted is not None and va_truth is not None:
            for d, dimension in enumerate(("valence", "arousal")):
                ccc = ccc_score(np.asarray(va_predicted)[mask, d], np.asarray(va_truth)[mask, d])
                row[f"{dimension}_ccc"] = np.nan if ccc is None else ccc
        rows.append(row)
    return pd.DataFrame(rows)


def widest_gap(table: pd.DataFrame, values: ArrayLike, labels: ArrayLike, predicted: ArrayLike,
               people: ArrayLike | None = None, min_faces: int = MIN_GROUP_FACES) -> GroupGap | None:
    """The accuracy of the most accurate group of ``table`` (:func:`group_scores`) minus the least accurate one's,
    among the groups of ``min_faces`` classed faces or more (not the faces the attribute is not given for), with its
    interval; None with fewer than two such groups."""
    if "accuracy" not in table:
        return None
    ranked = table[(table["classed_faces"] >= min_faces) & (table["group"] != NOT_GIVEN)
                   & table["accuracy"].notna()]
    if len(ranked) < 2:
        return None
    order = ranked.sort_values("accuracy", ascending=False, kind="stable")["group"]  # two groups, however they tie
    return group_gap(labels, predicted, values, order.iloc[0], order.iloc[-1], people)


def models_by_group(values: ArrayLike, labels: ArrayLike, people: ArrayLike | None,
                    answers: Mapping[str, tuple[ArrayLike | None, ArrayLike | None]],
                    va_truth: ArrayLike | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, GroupGap | None]]:
    """Each model's :func:`group_scores` and :func:`widest_gap` from its ``answers``: its class for each face and its
    (N, 2) valence and arousal, either None where it gives none."""
    tables, gaps = {}, {}
    for model, (classes, valence_arousal) in answers.items():
        tables[model] = group_scores(values, labels, classes, people, valence_arousal,
                                     None if valence_arousal is None else va_truth)
        gaps[model] = None if classes is None else widest_gap(tables[model], values, labels, classes, people)
    return tables, gaps


def gap_record(gap: GroupGap | None) -> dict | None:
    """``gap`` as JSON holds it: its best and worst groups, the difference, its interval and the verdict."""
    return None if gap is None else {"best": gap.first, "worst": gap.second, "difference": gap.difference,
                                     "low": gap.low, "high": gap.high, "verdict": gap.verdict()}


def group_record(table: pd.DataFrame, gap: GroupGap | None) -> dict:
    """``table`` (:func:`group_scores`) and ``gap`` as JSON holds them: a score a group has none of is null."""
    return {"groups": json.loads(table.to_json(orient="records")), "gap": gap_record(gap)}


def gap_sentence(model: str, gap: dict | None, attribute: str) -> str:
    """One sentence on ``model``'s widest gap by ``attribute`` (:func:`gap_record`), or why there is none."""
    if gap is None:
        return (f"{model}: fewer than two groups by {attribute} with {MIN_GROUP_FACES} classed faces or more, so no "
                "gap is measured.")
    return (f"{model}: accuracy {gap['difference']:+.4f} [{gap['low']:+.3f}, {gap['high']:+.3f}] on {gap['best']} "
            f"against {gap['worst']} (its best and worst groups by {attribute}): {gap['verdict']}.")


def group_lines(attribute: str, tables: Mapping[str, pd.DataFrame], gaps: Mapping[str, GroupGap | None],
                resampled: str, plot: str | None = None) -> list[str]:
    """A markdown section: each model's scores by group of ``attribute`` and its widest gap; ``resampled`` says what
    the bootstrap draws (faces, or people)."""
    table = pd.concat([t.assign(model=model) for model, t in tables.items()], ignore_index=True)
    shown = [c for c in ("model", "group", "faces", "classed_faces", "people", "accuracy", "macro_f1",
                         "balanced_accuracy", "valence_ccc", "arousal_ccc") if c in table]
    cells = table[shown].copy()
    if "accuracy" in table:
        cells["accuracy"] = [table_number(v) + ("" if pd.isna(lo) else f" [{lo:.3f}, {hi:.3f}]")
                             for v, lo, hi in zip(table["accuracy"], table["accuracy_low"], table["accuracy_high"])]
    return [f"## By {attribute}", "", markdown_table(cells), "",
            f"In brackets, each accuracy's {CONFIDENCE:.0%} bootstrap interval, drawing {resampled} with replacement; "
            f"a group of fewer than {MIN_GROUP_FACES} classed faces is listed but not ranked for a gap.", "",
            *[f"- {gap_sentence(model, gap_record(gap), attribute)}" for model, gap in gaps.items()], "",
            *([f"![by {attribute}]({plot})", ""] if plot else [])]


def write_group_scores(out: Path, attribute: str, tables: Mapping[str, pd.DataFrame],
                       gaps: Mapping[str, GroupGap | None], resampled: str
                       ) -> tuple[pd.DataFrame, dict[str, Path], list[str]]:
    """Every model's scores by group of ``attribute`` (``tables``, with their ``gaps``) into ``out``:
    ``by_<attribute>.csv`` and ``.png``; returns the table of them all, the files and the markdown section."""
    from affectkit.evaluation.plots import plot_group_scores  # matplotlib, for the writers only

    stem = out / attribute_file_stem(attribute)
    paths = {f"by {attribute}": stem.with_suffix(".csv"), f"by {attribute} plot": stem.with_suffix(".png")}
    table = pd.concat([t.assign(model=model) for model, t in tables.items()], ignore_index=True)
    table.to_csv(paths[f"by {attribute}"], index=False, float_format="%.4f")
    plot_group_scores(dict(tables), attribute, paths[f"by {attribute} plot"])
    return table, paths, group_lines(attribute, tables, gaps, resampled, paths[f"by {attribute} plot"].name)


__all__ = ["MIN_GROUP_FACES", "gap_record", "gap_sentence", "group_lines", "group_record", "group_scores",
           "models_by_group", "resampled_units", "widest_gap", "write_group_scores"]
