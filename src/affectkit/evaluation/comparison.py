"""The model comparison: ``model_comparison_results.csv``, ``model_comparison.png`` and ``report.md``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from affectkit.config import CLASS_NAMES, MAP_METHODS
from affectkit.evaluation.metrics import expression_score, prior_collapse
from affectkit.evaluation.selective import VALIDATION_COVERAGES
from affectkit.evaluation.significance import CONFIDENCE, PairedCCC, PairedComparison
from affectkit.runs import RunFolder

COLUMNS = [
    "model", "backbone", "initial_weights", "accuracy", "top2_accuracy", "top3_accuracy", "macro_f1", "balanced_accuracy", "ece",
    "valence_rmse", "valence_mae", "valence_pcc", "valence_ccc", "valence_sagr",
    "arousal_rmse", "arousal_mae", "arousal_pcc", "arousal_ccc", "arousal_sagr",
    "params_millions", "train_time_s", "inference_ms_per_image", "accuracy_low", "accuracy_high", "val_accuracy",
    "val_log_loss", "val_va_ccc", "chosen",
]


def comparison_row(model: str, metrics: dict, params: int, train_time_s: float, inference_ms: float,
                   backbone: str, initial_weights: str, val_accuracy: float = float("nan"),
                   val_log_loss: float = float("nan"), val_va_ccc: float = float("nan")) -> dict:
    """One row of the comparison; ``backbone`` is the architecture that actually ran and ``initial_weights`` where
    its training started from (``imagenet``, ``random``, ``scratch``, ``file``, ...); ``val_accuracy``: its accuracy
    on the validation faces, by which a model is chosen (NaN for one fit on them), ``val_log_loss`` breaking a tie;
    ``val_va_ccc``: its mean valence and arousal CCC there, by which one is chosen where no face has a class."""
    row = {"model": model, "backbone": backbone, "initial_weights": initial_weights,
           **{k: expression_score(metrics, k) for k in ("accuracy", "top2_accuracy", "top3_accuracy", "macro_f1",
                                                        "balanced_accuracy", "ece")}}
    for dim in ("valence", "arousal"):
        for key in ("rmse", "mae", "pcc", "ccc", "sagr"):
            row[f"{dim}_{key}"] = metrics[dim][key] if metrics.get(dim) else float("nan")
    row.update(params_millions=round(params / 1e6, 3), train_time_s=round(train_time_s, 1),
               inference_ms_per_image=round(inference_ms, 3))
    low, high = ((metrics["expression"] or {}).get("intervals") or {}).get("accuracy", (float("nan"),) * 2)
    row.update(accuracy_low=low, accuracy_high=high, val_accuracy=val_accuracy, val_log_loss=val_log_loss,
               val_va_ccc=val_va_ccc)
    return row


def write_comparison(rows: list[dict], run: RunFolder) -> tuple[Path, Path]:
    from affectkit.evaluation.plots import plot_model_comparison

    table = pd.DataFrame(rows)[COLUMNS]
    table.to_csv(run.comparison_table, index=False, float_format="%.4f")
    return run.comparison_table, Path(plot_model_comparison(table, run.comparison_plot))


def table_number(value: object, digits: int = 4) -> str:
    """A table cell: a number to ``digits`` decimals, "n/a" for a score the row does not have (NaN, None)."""
    if value is None or (isinstance(value, float) and value != value):  # NaN != NaN
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


INTERVAL_NOTE = ("In brackets, the score's 95% bootstrap interval over the test samples (people drawn with all "
                 "their samples where the data says who is who): how far another draw of as many could move it.")


def interval_cells(shown: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``shown`` with each score that ``table`` gives a spread as text: "0.9120 ± 0.0310" with its standard deviation
    (``<score>_std``, a cross-validation's), "0.9120 [0.871, 0.948]" with its interval (``<score>_low`` / ``_high``,
    a test split's bootstrap); other cells as they are."""
    shown = shown.copy()
    missing = pd.Series(float("nan"), index=table.index)
    for column in shown.columns:
        if not {f"{column}_std", f"{column}_low"} & set(table.columns):
            continue
        spread = table.get(f"{column}_std", missing)
        low, high = table.get(f"{column}_low", missing), table.get(f"{column}_high", missing)
        shown[column] = [table_number(value)
                         + ("" if pd.isna(value) or pd.isna(std) else f" ± {std:.4f}")
                         + ("" if pd.isna(value) or pd.isna(lo) else f" [{lo:.3f}, {hi:.3f}]")
                         for value, std, lo, hi in zip(table[column], spread, low, high)]
    return shown


VALIDATION_SCORES = {"val_accuracy": "validation accuracy {:.4f}",
                     "val_va_ccc": "validation CCC {:.4f}, the mean of valence's and arousal's"}


def choice_score(rows: Sequence[dict]) -> str:
    """The validation score a run chooses its model by, one rule for the choice and its report: accuracy where a row
    has a test accuracy (the test faces have classes and a model predicts them), else the mean of valence's and
    arousal's CCC."""
    return "val_accuracy" if any(pd.notna(row.get("accuracy")) for row in rows) else "val_va_ccc"


def _choice_sentence(table: pd.DataFrame, chosen: str | None, by: str = "val_accuracy") -> str:
    """Which model to use, chosen on the validation faces alone (a run's test faces only score), where one was;
    ``by``: the column it was chosen by."""
    if chosen is None:
        return ("No model has a validation score to choose by; each test score below was computed once, after "
                "training. ")
    val = table.set_index("model")[by]
    unscored = [model for model, score in val.items() if pd.isna(score)]
    return (f"Chosen on the validation faces: **{chosen}** ({VALIDATION_SCORES[by].format(val[chosen])}), the model "
            "to use; the test faces, scored once after training, played no part in the choice"
            + (f" ({', '.join(unscored)}: fit on the validation faces, so they cannot judge it)" if unscored else "")
            + ". ")


def class_names_of(ids: np.ndarray) -> np.ndarray:
    """Each class id's name, blank for NO_EXPRESSION (-1, which indexes the last)."""
    return np.array([*CLASS_NAMES, ""])[ids]


def predictions_table(ids: np.ndarray, labels: np.ndarray, groups: np.ndarray | None,
                      predicted: dict[str, np.ndarray]) -> pd.DataFrame:
    """One line per face: its id, its class (blank where it has none), its person (where known) and each model's
    class for it (``predicted``: class ids by model name); what ``test_predictions.csv`` holds."""
    table = {"id": ids, "expression": class_names_of(labels)}
    if groups is not None:
        table["person"] = groups
    table.update({model: class_names_of(classes) for model, classes in predicted.items()})
    return pd.DataFrame(table)


LISTED_COVERAGES = (0.9, 0.8, 0.7, 0.5)  # the shares of the validation faces answered that cards and reports list


def listed_shares(rows: Sequence[dict]) -> list[dict]:
    """The rows, one per share of :data:`VALIDATION_COVERAGES` (a model's ``validation_coverage`` curve, or an
    evaluation's ``validation_thresholds``), of the shares of the validation faces worth listing."""
    return [row for asked, row in zip(VALIDATION_COVERAGES, rows) if asked in LISTED_COVERAGES]


def held_out_threshold_sentence(tried: Sequence[dict]) -> str:
    """How the abstention thresholds read on the validation faces did on other faces (an evaluation's
    ``validation_thresholds``)."""
    return "answering " + "; ".join(
        f"{t['validation_coverage']:.0%} of them there (probability {t['min_confidence']:.2f} or more, "
        f"{t['validation_accuracy']:.3f} right) answers {t['coverage']:.0%} here, {table_number(t['accuracy'], 3)} "
        "right" for t in listed_shares(tried)) + "."


def class_threshold_sentence(tried: Sequence[dict]) -> str:
    """How thresholds per class (``--per-class-thresholds``) did on other faces against the overall one (an
    evaluation's ``class_thresholds``)."""
    def share(found: dict) -> str:
        return f"{found['coverage']:.0%} answered, {table_number(found['accuracy'], 3)} right"

    return "; ".join(f"for {t['target_accuracy']:g}, {share(t['per_class'])} against {share(t['overall'])}"
                     for t in tried) + "."


def markdown_table(df: pd.DataFrame) -> str:
    header = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(map(table_number, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def comparison_lines(comparisons: list[tuple[str, PairedComparison]], first: str, faces: str,
                     first_label: str = "the recipe", others: str = "row") -> list[str]:
    """The markdown section that says, for each of ``comparisons``, whether ``first``'s accuracy (called
    ``first_label`` in the table) is above the other's, given how few test faces there are."""
    if not comparisons:
        return []
    grouped = comparisons[0][1].grouped
    level = f"{CONFIDENCE:.0%}"
    table = pd.DataFrame([{
        "against": model, "accuracy difference": f"{c.difference:+.4f}",
        f"{level} interval": f"{c.low:+.4f} to {c.high:+.4f}", f"only {first_label} right": c.only_first,
        "only the other right": c.only_second, "McNemar p": f"{c.p_value:.3g}", f"{first_label} is": c.verdict()}
        for model, c in comparisons])
    return [
        f"## {first} against each {others}, face by face",
        "",
        f"{first} against every other {others} on the same {faces} (paired): its accuracy minus the other's, with a "
        f"{level} bootstrap interval (the faces{' of each person drawn' if grouped else ''} resampled together "
        "for both); the faces only one of the two got right; McNemar's exact test of whether each is right as "
        f"often, which gives the verdict (p below {1 - CONFIDENCE:.2g}"
        + ("; resampled by person, the interval must leave out 0 too, as McNemar counts a person's faces as "
           "independent" if grouped else "")
        + "). \"Not told apart\": these faces cannot say which is better, whatever the table's third decimal says.",
        "",
        markdown_table(table),
        "",
    ]


def ccc_comparison_lines(comparisons: list[tuple[str, PairedCCC]], first: str, faces: str) -> list[str]:
    """The markdown section that says, for each of ``comparisons``, whether ``first``'s mean valence and arousal CCC
    is above the other's, given how few test faces there are."""
    if not comparisons:
        return []
    grouped = comparisons[0][1].grouped
    level = f"{CONFIDENCE:.0%}"
    table = pd.DataFrame([{"against": model, "CCC difference": f"{c.difference:+.4f}",
                           f"{level} interval": f"{c.low:+.4f} to {c.high:+.4f}", "the chosen model is": c.verdict()}
                          for model, c in comparisons])
    return [
        f"## {first} against each model, face by face",
        "",
        f"{first} against every other model on the same {faces} (paired): its CCC (the mean of valence's and "
        f"arousal's) minus the other's, with a {level} bootstrap interval (the faces"
        f"{' of each person drawn' if grouped else ''} resampled together for both), which gives the verdict: "
        "\"not told apart\" where it holds 0, as these faces cannot say which is better.",
        "",
        markdown_table(table),
        "",
    ]


def _classes_line(summary: dict) -> str:
    unclassed = summary.get("valence_arousal_only")
    if not any(summary["class_counts"].values()):
        return f"Classes: none; all {unclassed} faces are annotated for valence/arousal only."
    counts = ", ".join(f"{k} {v}" for k, v in summary["class_counts"].items())
    return (f"Classes: {counts}." + (f" Absent from the data: {', '.join(summary['absent_classes'])}."
                                     if summary.get("absent_classes") else "")
            + (f" Faces with valence/arousal only (no class): {unclassed}." if unclassed else ""))


def _why_no_accuracy(summary: dict) -> str:
    """Why no model has a test accuracy: no face has a class, no test face has one, or no training face had one (so
    the models learnt valence and arousal only)."""
    if not any(summary["class_counts"].values()):
        return "The models predict valence and arousal only: no face has an expression class. "
    if summary.get("classed_split_sizes", {}).get("test"):
        return "The models predict valence and arousal only: no training face has an expression class. "
    return "No test face has an expression class. "


def write_report(run: RunFolder, summary: dict, rows: list[dict], models: list[str], notes: list[str],
                 transfer: list[dict] | None = None, chosen: str | None = None,
                 comparisons: list[tuple[str, PairedComparison | PairedCCC]] | None = None,
                 remarks: Sequence[str] = (), sections: Sequence[str] = (), map_method: str = "gradcam") -> Path:
    """A report readable on its own: configuration, data, the comparison, every plot; ``transfer``: pretrained
    against random-start controls (see :func:`affectkit.pipeline.run_pipeline`); ``chosen``: the row chosen on
    the validation faces, set against the others on the test faces in ``comparisons`` (by accuracy, or by
    valence and arousal CCC where no face has a class); ``remarks``: sentences on rows the run could not make;
    ``sections``: markdown lines after the comparison (the scores by group of faces); ``map_method``: how the
    chosen model's class maps were drawn (gradcam or occlusion)."""
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    by = choice_score(rows)
    scored = by == "val_accuracy"
    main = interval_cells(table[["model", "backbone", "initial_weights", by, "accuracy", "top2_accuracy",
                                 "macro_f1", "valence_ccc", "arousal_ccc", "valence_rmse", "arousal_rmse",
                                 "params_millions", "train_time_s", "inference_ms_per_image"]], table)
    rejected = ", ".join(f"{k}: {v}" for k, v in summary["rejected_by_reason"].items()) or "none"
    lines = [
        "# affectkit run report",
        "",
        f"Data: `{summary['source']}` ({summary.get('layout_description', summary['layout'] + ' layout')}): "
        f"{summary['valid_samples']} valid samples, "
        f"{summary['rejected_samples']} quarantined ({rejected}; see `{run.quarantine.name}`).",
        "",
        _classes_line(summary),
        "",
        *([f"Split: {summary['split']}.", ""] if summary.get("split") else []),
        f"![dataset analysis]({run.dataset_analysis.name})",
        "",
        "## Comparison on the shared test split",
        "",
        markdown_table(main),
        "",
        (_choice_sentence(table, chosen) + f"In brackets, each accuracy's {CONFIDENCE:.0%} bootstrap interval over "
         "the test faces: models whose intervals overlap much may not differ on faces like these. " if scored
         else _why_no_accuracy(summary) + _choice_sentence(table, chosen, by))
        + f"Full numbers: `{run.comparison_table.name}`.",
        "",
        *[line for remark in remarks for line in (remark, "")],
        f"![model comparison]({run.comparison_plot.name})",
        "",
        *((comparison_lines(comparisons, chosen, "test faces", first_label="the chosen model", others="model")
           if scored else ccc_comparison_lines(comparisons, chosen, "test faces"))
          if chosen and comparisons else []),
        *sections,
    ]
    for name in models:
        lines += [f"## {name}", ""]
        plots = (("training history", run.training_plot(name)), ("confusion matrix", run.confusion_matrix(name)),
                 ("reliability", run.reliability(name)), ("most confident mistakes", run.mistakes(name)),
                 ("accuracy on its surest faces", run.coverage(name)))
        lines += [f"![{name} {kind}]({plot.name})" for kind, plot in plots if plot.is_file()]  # ensembles: no history
        if run.class_maps(name).is_file():  # the chosen model's
            lines += ["", f"![where {name} looks]({run.class_maps(name).name})", "",
                      "Where it finds the evidence for each test face's own class: the class's mean face under its "
                      f"mean {MAP_METHODS[map_method]} map, and the share of the maps on the upper face (`affectkit "
                      f"explain`; per class `{name}_class_maps.csv`, per face `{name}_explanations.csv`)."]
        expression = json.loads(run.metrics(name).read_text())["expression"]
        if warning := prior_collapse(expression, CLASS_NAMES):
            lines += ["", f"**Warning:** {name} {warning}"]
        if (expression or {}).get("validation_thresholds"):
            lines += ["", "Abstaining (`affectkit predict --target-accuracy A`, or `--min-confidence P`): the "
                          "thresholds read on the validation faces, on the test faces: "
                      + held_out_threshold_sentence(expression["validation_thresholds"])]
        if (expression or {}).get("class_thresholds"):
            lines += ["", "With a threshold per class (`--per-class-thresholds`) against one for all, on the test "
                          "faces: " + class_threshold_sentence(expression["class_thresholds"])]
        files = [run.metrics(name), *(path for path in [run.face_predictions(name), run.history(name)]
                                      if path.is_file())]
        lines += ["", f"Files: {', '.join(f'`{file.name}`' for file in files)}.", ""]
    if transfer:
        lines += ["## Transfer learning: pretrained start against a random start", "",
                  "Each pretrained model was trained a second time from randomly initialised weights, with the same "
                  f"data, split, recipe and epoch budget (files under `{run.random_start.root.name}/`); test "
                  "accuracy:", "", markdown_table(pd.DataFrame(transfer)), ""]
    if notes:
        lines += ["## Models and their starting weights", "", *[f"- {n}" for n in notes], ""]
    lines += ["## Configuration", "", "```yaml", run.config.read_text().rstrip(), "```", ""]
    run.report.write_text("\n".join(lines))
    return run.report
