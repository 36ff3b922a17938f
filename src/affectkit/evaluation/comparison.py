"""The model comparison: ``model_comparison_results.csv``, ``model_comparison.png`` and ``report.md``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from affectkit.config import Config

COLUMNS = [
    "model", "backbone", "initial_weights", "accuracy", "top2_accuracy", "top3_accuracy", "macro_f1", "balanced_accuracy", "ece",
    "valence_rmse", "valence_mae", "valence_pcc", "valence_ccc", "valence_sagr",
    "arousal_rmse", "arousal_mae", "arousal_pcc", "arousal_ccc", "arousal_sagr",
    "params_millions", "train_time_s", "inference_ms_per_image",
]


def comparison_row(model: str, metrics: dict, params: int, train_time_s: float, inference_ms: float,
                   backbone: str, initial_weights: str) -> dict:
    """One row of the comparison; ``backbone`` is the architecture that actually ran and ``initial_weights`` where
    its training started from (``imagenet``, ``random``, ``scratch``, ``file``, ...)."""
    e = metrics["expression"]
    row = {"model": model, "backbone": backbone, "initial_weights": initial_weights, **{k: e[k] for k in ("accuracy", "top2_accuracy", "top3_accuracy", "macro_f1",
                                                 "balanced_accuracy", "ece")}}
    for dim in ("valence", "arousal"):
        for key in ("rmse", "mae", "pcc", "ccc", "sagr"):
            row[f"{dim}_{key}"] = metrics[dim][key] if metrics.get(dim) else float("nan")
    row.update(params_millions=round(params / 1e6, 3), train_time_s=round(train_time_s, 1),
               inference_ms_per_image=round(inference_ms, 3))
    return row


def write_comparison(rows: list[dict], out_dir: Path) -> tuple[Path, Path]:
    from affectkit.evaluation.plots import plot_model_comparison

    table = pd.DataFrame(rows)[COLUMNS]
    csv = out_dir / "model_comparison_results.csv"
    table.to_csv(csv, index=False, float_format="%.4f")
    png = plot_model_comparison(table, out_dir / "model_comparison.png")
    return csv, Path(png)


def markdown_table(df: pd.DataFrame) -> str:
    header = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def write_report(out_dir: Path, config: Config, summary: dict, rows: list[dict], models: list[str],
                 notes: list[str], transfer: list[dict] | None = None) -> Path:
    """A report readable on its own: configuration, data, the comparison, every plot; ``transfer``: pretrained
    against random-start controls (see ``pipeline.run_pipeline``)."""
    table = pd.DataFrame(rows)[COLUMNS]
    main = table[["model", "backbone", "initial_weights", "accuracy", "top2_accuracy", "macro_f1", "valence_ccc", "arousal_ccc",
                  "valence_rmse", "arousal_rmse", "params_millions", "train_time_s", "inference_ms_per_image"]]
    best = table.loc[table["accuracy"].idxmax(), "model"]
    counts = ", ".join(f"{k} {v}" for k, v in summary["class_counts"].items())
    rejected = ", ".join(f"{k}: {v}" for k, v in summary["rejected_by_reason"].items()) or "none"
    lines = [
        "# affectkit run report",
        "",
        f"Data: `{summary['source']}` ({summary.get('layout_description', summary['layout'] + ' layout')}): "
        f"{summary['valid_samples']} valid samples, "
        f"{summary['rejected_samples']} quarantined ({rejected}; see `quarantine.csv`).",
        "",
        f"Classes: {counts}." + (f" Absent from the data: {', '.join(summary['absent_classes'])}."
                                  if summary.get("absent_classes") else ""),
        "",
        *([f"Split: {summary['split']}.", ""] if summary.get("split") else []),
        "![dataset analysis](dataset_analysis.png)",
        "",
        "## Comparison on the shared test split",
        "",
        markdown_table(main),
        "",
        f"Best expression accuracy: **{best}**. Full numbers: `model_comparison_results.csv`.",
        "",
        "![model comparison](model_comparison.png)",
        "",
    ]
    for name in models:
        lines += [f"## {name}", ""]
        for kind in ("training_history", "confusion_matrix", "reliability"):
            if (out_dir / f"{name}_{kind}.png").is_file():  # ensembles have no training history
                lines.append(f"![{name} {kind.replace('_', ' ')}]({name}_{kind}.png)")
        files = [f"`{name}_metrics.json`"] + ([f"`{name}_history.csv`"] if (out_dir / f"{name}_history.csv").is_file() else [])
        lines += ["", f"Files: {', '.join(files)}.", ""]
    if transfer:
        lines += ["## Transfer learning: pretrained start against a random start", "",
                  "Each pretrained model was trained a second time from randomly initialised weights, with the same "
                  "data, split, recipe and epoch budget (files under `random_start/`); test accuracy:", "",
                  markdown_table(pd.DataFrame(transfer)), ""]
    if notes:
        lines += ["## Models and their starting weights", "", *[f"- {n}" for n in notes], ""]
    lines += ["## Configuration", "", "```yaml", Path(out_dir / "config.yaml").read_text().rstrip(), "```", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
