"""``affectkit benchmark --folds K``: the benchmark repeated on the K folds of a cross-validation, each fold's faces
the test split once, and its scores given as mean and standard deviation over the folds.

Small posed sets (CK+, JAFFE, KDEF) are reported this way in the literature (subject-independent 10-fold CV), and
one split of a hundred subjects moves by several points with the subjects it happens to test. Each fold is a whole
benchmark in ``fold_<i>/`` (its ``splits.csv``, models, ``benchmark.md``); the top folder holds every fold's rows
(``benchmark_folds.csv``) and their summary (``benchmark.csv``, ``benchmark.md``, ``benchmark.png``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from affectkit.config import Config
from affectkit.data.reader import DatasetIndex, read_dataset, reader_options
from affectkit.data.splits import cross_validation_splits
from affectkit.errors import AffectkitError
from affectkit.evaluation.comparison import comparison_lines, markdown_table
from affectkit.evaluation.plots import plot_benchmark
from affectkit.pipeline.benchmark import (
    RECIPE_MODEL,
    BenchmarkResult,
    benchmark_config,
    recipe_comparisons,
    run_benchmark,
    score_cells,
)
from affectkit.progress import reporter, silenced
from affectkit.runs import RunFolder

SCORES = ["accuracy", "macro_f1", "balanced_accuracy", "valence_ccc", "arousal_ccc", "train_time_s",
          "inference_ms_per_image"]


def _write_fold_splits(folder: RunFolder, table: pd.DataFrame) -> None:
    """The fold's split, where the fold's benchmark reads it; one already there must be this fold's (a resumed run),
    not a fold of another cross-validation (other --folds, seed or data)."""
    if folder.splits.is_file():
        kept = pd.read_csv(folder.splits, dtype={"id": str, "group": str}, keep_default_na=False)
        if list(kept["id"]) != list(table["id"]) or list(kept["split"]) != list(table["split"]):
            raise AffectkitError(f"{folder.splits} is the split of another cross-validation (other --folds, seed or "
                                 "data): use another --out folder.")
        return
    folder.root.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder.splits, index=False)


def summarise_folds(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per model: each score's mean over the folds (under its own name) and standard deviation
    (``<score>_std``), in the order the models first appear."""
    grouped = rows.groupby("model", sort=False)
    summary = grouped[["key", "kind", "backbone"]].first()
    summary["folds"] = grouped["fold"].nunique()
    for score in SCORES:
        summary[score] = grouped[score].mean()
        summary[f"{score}_std"] = grouped[score].std(ddof=1)
    return summary.reset_index()


def run_cross_validation(data: Path, out: Path, folds: int, config: Config | None = None,
                         models: list[str] | None = None, baselines: tuple[str, ...] | None = None,
                         quiet: bool = False, recipe: str = RECIPE_MODEL, resume: bool = False) -> BenchmarkResult:
    """The benchmark (:func:`run_benchmark`, same arguments) on each fold of a ``folds``-fold cross-validation of
    ``data``; the result's table is :func:`summarise_folds`. ``resume``: folds already benchmarked in ``out`` are
    read back, an interrupted one goes on where its training stopped."""
    with silenced(quiet):
        data, out = Path(data), Path(out)
        config = config or benchmark_config(data=data)
        index = read_dataset(data, **reader_options(config))
        reporter().note(index.describe())
        tables = cross_validation_splits(index.records, folds, config.validation_split, config.seed,
                                         config.max_samples)
        options = {} if baselines is None else {"baselines": baselines}
        per_fold, notes = [], []
        for fold, table in enumerate(tables, start=1):
            folder = RunFolder(out / f"fold_{fold}")
            _write_fold_splits(folder, table)
            reporter().show(f"Fold {fold}/{folds}: {int((table['split'] == 'test').sum())} test faces")
            if not (resume and folder.benchmark_table.is_file()):
                result = run_benchmark(data, folder.root, config, models=models, recipe=recipe, resume=resume,
                                       index=index, **options)
                notes += [note for note in result.notes if note not in notes]
            # Read back as written, so that a resumed cross-validation sums the same numbers.
            per_fold.append(pd.read_csv(folder.benchmark_table).assign(fold=fold))
        rows = pd.concat(per_fold, ignore_index=True)
        summary = summarise_folds(rows)
        pooled = _pooled_predictions([RunFolder(out / f"fold_{fold}") for fold in range(1, folds + 1)])
        top = RunFolder(out)
        paths = {"csv": top.benchmark_table, "markdown": top.benchmark_report, "chart": top.benchmark_chart,
                 "folds": out / "benchmark_folds.csv", "config": config.to_yaml(top.config)}
        rows.to_csv(paths["folds"], index=False, float_format="%.4f")
        summary.to_csv(paths["csv"], index=False, float_format="%.4f")
        plot_benchmark(summary, paths["chart"], f"Mean over {folds} cross-validation folds of {data.name} "
                                                "(bars: one standard deviation)")
        tested = [int((table["split"] == "test").sum()) for table in tables]
        if pooled is not None:
            paths["predictions"] = top.test_predictions
            pooled.to_csv(paths["predictions"], index=False)
        paths["markdown"].write_text(_markdown(summary, index, data, tested, notes, pooled))
        return BenchmarkResult(summary, paths, notes)


def _pooled_predictions(folders: list[RunFolder]) -> pd.DataFrame | None:
    """Every fold's ``test_predictions.csv`` together: each face once, as the fold that tested it predicted it (the
    fold in a column of its own); None where a fold has none (a valence/arousal set, or a fold benchmarked by an
    affectkit that did not write it)."""
    if not all(folder.test_predictions.is_file() for folder in folders):
        return None
    return pd.concat([pd.read_csv(folder.test_predictions, dtype=str, keep_default_na=False).assign(fold=fold)
                      for fold, folder in enumerate(folders, start=1)], ignore_index=True)


def _markdown(summary: pd.DataFrame, index: DatasetIndex, source: Path, tested: list[int], notes: list[str],
              pooled: pd.DataFrame | None) -> str:
    folds = len(tested)
    grouped = any(r.group is not None for r in index.records)
    strata = "expression" if any(r.has_expression for r in index.records) else "valence/arousal quadrant"
    together = f"subject-disjoint ({index.group_source or 'subject'})" if grouped else "copies of one image in one fold"
    given = index.given_splits()
    fold_lines = [f"- [fold {fold}](fold_{fold}/benchmark.md): {n} test faces" for fold, n in enumerate(tested, 1)]
    lines = [
        f"# affectkit benchmark: {folds}-fold cross-validation",
        "",
        f"Data: `{source}`, {index.describe()}.",
        "",
        f"Folds: {folds}, stratified by {strata}, {together}; every face is in the test split of one fold; in each "
        "fold, val is carved from the other folds' faces." + (f" The data's own split ({'/'.join(given)}) is set "
                                                              "aside." if given else ""),
        "",
        f"## Results: mean ± standard deviation over the {folds} test folds",
        "",
        markdown_table(score_cells(summary)),
        "",
        "![benchmark](benchmark.png)",
        "",
        *(comparison_lines(recipe_comparisons(pooled, summary), "The recipe",
                           f"{len(pooled)} faces, each as the fold that tested it predicted it "
                           "(`test_predictions.csv`)") if pooled is not None else []),
        "## Honest selection",
        "",
        "Each fold is a benchmark of its own: every model is selected on that fold's validation split and scores its "
        "test fold once, at the end; no fold's choice sees another fold's test faces. Every fold's rows are in "
        "`benchmark_folds.csv`; how each row was made, in each fold's report:",
        "",
        *fold_lines,
        *([""] + [f"- {note}" for note in notes] if notes else []),
        "",
    ]
    return "\n".join(lines)


__all__ = ["run_cross_validation", "summarise_folds"]
