"""The spec's data analyzer: ``dataset_analysis.png`` and ``dataset_summary.json``."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from affectkit.config import CLASS_NAMES, NO_EXPRESSION, Config  # noqa: E402
from affectkit.data.cache import decode_record  # noqa: E402
from affectkit.data.reader import DatasetIndex, read_dataset, reader_options  # noqa: E402
from affectkit.data.splits import SPLITS, split_description  # noqa: E402
from affectkit.data.synthetic import is_synthetic_data  # noqa: E402
from affectkit.runs import RunFolder  # noqa: E402

PALETTE = plt.get_cmap("tab10").colors


def records_frame(index: DatasetIndex) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [r.id for r in index.records],
            "expression": [r.expression for r in index.records],
            "valence": [r.valence for r in index.records],
            "arousal": [r.arousal for r in index.records],
        }
    )


def _stats(values: pd.Series) -> dict[str, float] | None:
    values = values.dropna()
    if values.empty:
        return None
    return {k: round(float(v), 4) for k, v in
            {"min": values.min(), "max": values.max(), "mean": values.mean(), "std": values.std(ddof=0)}.items()}


def vote_agreement(index: DatasetIndex) -> dict | None:
    """How far annotators agree where the data gives their votes (FER+, a manifest's vote columns): the most voted
    class's mean share, overall and by that class, and the fraction of unanimous faces; None without votes."""
    voted = [r for r in index.records if r.expression_distribution is not None]
    if not voted:
        return None
    top = pd.DataFrame({"expression": [r.expression for r in voted],
                        "share": [max(r.expression_distribution) for r in voted]})
    by_class = top.groupby("expression")["share"].mean()
    return {
        "faces": len(voted),
        "mean_top_share": round(float(top["share"].mean()), 4),
        "unanimous_fraction": round(float((top["share"] >= 1 - 1e-6).mean()), 4),
        "mean_top_share_by_class": {CLASS_NAMES[c]: round(float(v), 4) for c, v in by_class.items()},
    }


def dataset_summary(index: DatasetIndex, splits: pd.DataFrame | None = None) -> dict:
    """The data set's numbers; with the run's ``splits`` also how they were made (given, carved, grouped)."""
    df = records_frame(index)
    counts = df["expression"].value_counts().reindex(range(len(CLASS_NAMES)), fill_value=0)
    per_class = {
        name: {"count": int(counts[i]), "valence": _stats(df.loc[df.expression == i, "valence"]),
               "arousal": _stats(df.loc[df.expression == i, "arousal"])}
        for i, name in enumerate(CLASS_NAMES)
    }
    summary = {
        "source": str(index.root),
        "layout": index.layout,
        "layout_description": index.describe(),
        "synthetic": is_synthetic_data(index.root),  # affectkit's rendered demo faces, not photographs of people
        "classes": list(CLASS_NAMES),
        "absent_classes": index.absent_classes(),
        "grouped_by": index.group_source,
        "valid_samples": len(df),
        "rejected_samples": len(index.rejected),
        "rejected_by_reason": index.rejection_counts(),
        "class_counts": {name: int(counts[i]) for i, name in enumerate(CLASS_NAMES)},
        "valence_arousal_only": index.without_expression(),  # faces without a class: in no class's count
        "class_fraction": {name: round(float(counts[i]) / max(len(df), 1), 4) for i, name in enumerate(CLASS_NAMES)},
        "valence": _stats(df["valence"]),
        "arousal": _stats(df["arousal"]),
        "has_landmarks": any(r.landmarks is not None for r in index.records),
        "annotator_votes": vote_agreement(index),
        "per_class": per_class,
    }
    if splits is not None:
        summary["split"] = split_description(splits, index)
        counts = splits["split"].value_counts()
        summary["split_sizes"] = {s: int(counts.get(s, 0)) for s in SPLITS}
    return summary


def _sample_grid(ax_grid, index: DatasetIndex, seed: int) -> None:
    rng = np.random.default_rng(seed)
    by_class = {c: [r for r in index.records if r.expression == c] for c in range(len(CLASS_NAMES))}
    picks = [by_class[c][rng.integers(len(by_class[c]))] for c in by_class if by_class[c]]
    for ax in ax_grid:
        ax.axis("off")
    for ax, record in zip(ax_grid, picks):
        size = 160
        ax.imshow(decode_record(record, size))
        if record.landmarks is not None and record.width:
            pts = record.landmarks * np.array([size / record.width, size / record.height])
            ax.scatter(pts[:, 0], pts[:, 1], s=3, c="lime", linewidths=0)
        va = f"\nv {record.valence:+.2f} a {record.arousal:+.2f}" if record.has_valence_arousal else ""
        ax.set_title(f"{CLASS_NAMES[record.expression]}{va}", fontsize=8)


def plot_dataset_analysis(index: DatasetIndex, path: str | Path, seed: int = 0) -> Path:
    path = Path(path)
    df = records_frame(index)
    has_va = df["valence"].notna().any()
    fig = plt.figure(figsize=(16, 8.5), constrained_layout=True)
    grid = fig.add_gridspec(2, 4, height_ratios=[1.3, 1])
    fig.suptitle(f"Dataset analysis: {index.root.name} ({len(df)} valid, {len(index.rejected)} rejected)", fontsize=14)

    ax = fig.add_subplot(grid[0, 0])
    counts = df["expression"].value_counts().reindex(range(len(CLASS_NAMES)), fill_value=0)
    bars = ax.bar(CLASS_NAMES, counts.values, color=PALETTE[: len(CLASS_NAMES)])
    ax.bar_label(bars, fontsize=8)
    unclassed = df[df.expression == NO_EXPRESSION]
    ax.set_title("Expression classes" + (f" ({len(unclassed)} faces with none)" if len(unclassed) else ""))
    ax.tick_params(axis="x", rotation=45)

    for col, name in ((1, "valence"), (2, "arousal")):
        ax = fig.add_subplot(grid[0, col])
        if has_va:
            ax.hist(df[name].dropna(), bins=40, range=(-1, 1), color="tab:blue" if name == "valence" else "tab:red")
            ax.axvline(df[name].mean(), color="k", ls="--", label=f"mean {df[name].mean():+.3f}")
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {name} annotations", ha="center", va="center")
        ax.set_title(f"{name.capitalize()} distribution")
        ax.set_xlabel(name)

    ax = fig.add_subplot(grid[0, 3])
    if has_va:
        if len(unclassed):
            ax.scatter(unclassed.valence, unclassed.arousal, s=8, alpha=0.4, color="black", marker="x",
                       linewidths=0.6, label="no class")
        for i, name in enumerate(CLASS_NAMES):
            sel = df[df.expression == i]
            ax.scatter(sel.valence, sel.arousal, s=6, alpha=0.6, color=PALETTE[i], label=name)
        ax.add_patch(plt.Circle((0, 0), 1, fill=False, color="grey", lw=0.8))
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7, markerscale=2, ncol=2)
    else:
        ax.text(0.5, 0.5, "no valence/arousal annotations", ha="center", va="center")
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), xlabel="valence", ylabel="arousal", title="Valence-arousal by class")
    ax.set_aspect("equal")

    faces = grid[1, :].subgridspec(1, 8)
    _sample_grid([fig.add_subplot(faces[0, i]) for i in range(8)], index, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def analyze(index: DatasetIndex, out_dir: str | Path, seed: int = 0,
            splits: pd.DataFrame | None = None) -> tuple[Path, Path]:
    run = RunFolder(Path(out_dir))
    run.root.mkdir(parents=True, exist_ok=True)
    figure = plot_dataset_analysis(index, run.dataset_analysis, seed)
    run.dataset_summary.write_text(json.dumps(dataset_summary(index, splits), indent=2))
    index.write_quarantine(run.quarantine)
    return figure, run.dataset_summary


def analyze_data(data: str | Path, out_dir: str | Path, config: Config) -> tuple[DatasetIndex, Path, Path]:
    """Read the data set at ``data`` as ``config`` says (layout, class_map, group_pattern) and analyse it into
    ``out_dir``: its index, ``dataset_analysis.png`` and ``dataset_summary.json`` (and ``quarantine.csv``)."""
    index = read_dataset(data, **reader_options(config))
    return (index, *analyze(index, out_dir))
