"""The spec's data analyzer: ``dataset_analysis.png`` and ``dataset_summary.json``."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from affectkit.config import CLASS_NAMES, NO_EXPRESSION, Config  # noqa: E402
from affectkit.data.cache import decode_record  # noqa: E402
from affectkit.data.face_tables import (  # noqa: E402
    attribute_file_stem,
    attribute_table,
    check_grouping,
    group_order,
    read_attributes,
)
from affectkit.data.reader import DatasetIndex, read_dataset, reader_options  # noqa: E402
from affectkit.data.splits import SPLITS, saved_again, split_description  # noqa: E402
from affectkit.data.synthetic import is_synthetic_data  # noqa: E402
from affectkit.runs import RunFolder  # noqa: E402

PALETTE = plt.get_cmap("tab10").colors
SPLIT_COLOURS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


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
    copies, relabelled = index.copies()
    counts = df["expression"].value_counts().reindex(range(len(CLASS_NAMES)), fill_value=0)
    per_class = {
        name: {"count": int(counts[i]), "valence": _stats(df.loc[df.expression == i, "valence"]),
               "arousal": _stats(df.loc[df.expression == i, "arousal"])}
        for i, name in enumerate(CLASS_NAMES)
    }
    summary = {
        "source": str(index.given_as),
        "layout": index.layout,
        "layout_description": index.describe(),
        "synthetic": is_synthetic_data(index.root),  # affectkit's rendered demo faces, not photographs of people
        "classes": list(CLASS_NAMES),
        "absent_classes": index.absent_classes(),
        "grouped_by": index.group_source,
        "groups": len({r.group for r in index.records if r.group is not None}) or None,  # people (or clips)
        "valid_samples": len(df),
        "identical_copies": copies,  # faces whose pixels an earlier face has
        "identical_copies_labelled_otherwise": relabelled,
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
        classed = splits.loc[splits["expression"] != NO_EXPRESSION, "split"].value_counts()
        summary["classed_split_sizes"] = {s: int(classed.get(s, 0)) for s in SPLITS}  # faces with a class
        if (copies := saved_again(splits, index.records)) is not None:  # the faces' pixels were compared
            summary["saved_again_copies"], summary["saved_again_copies_labelled_otherwise"] = copies
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


def record_splits(index: DatasetIndex, splits: pd.DataFrame | None = None) -> list[str] | None:
    """Each record's split: the run's ``splits`` where given ("not used" for a record a sample cap left out), else the
    split the data carries itself where every record has one (a partial one is not used as such: ``make_splits``);
    None where neither says."""
    if splits is not None:
        by_id = dict(zip(splits["id"].astype(str), splits["split"]))
        return [by_id.get(r.id, "not used") for r in index.records]
    given = [r.split for r in index.records]
    return given if given and all(s is not None for s in given) else None


def _face_sizes(index: DatasetIndex) -> pd.DataFrame:
    return pd.DataFrame({"width": [r.width for r in index.records], "height": [r.height for r in index.records]})


def analysis_panels(index: DatasetIndex, splits: list[str] | None = None) -> list[str]:
    """The panels above the sample faces, in order: what this data set has to show (``splits``: ``record_splits``)."""
    panels = ["classes"]
    classed = any(r.has_expression for r in index.records)
    if classed and splits is not None and len(set(splits) & set(SPLIT_COLOURS)) > 1:
        panels.append("class_shares")
    if any(r.has_valence_arousal for r in index.records):
        panels += ["valence", "arousal", "circumplex"]
    if len(_face_sizes(index).drop_duplicates()) > 1:
        panels.append("sizes")
    if any(r.group is not None for r in index.records):
        panels.append("groups")
    if index.rejected:
        panels.append("rejected")
    return panels


def _class_panel(ax, df: pd.DataFrame, splits: list[str] | None) -> None:
    classed = df[df.expression != NO_EXPRESSION]
    counts = classed["expression"].value_counts().reindex(range(len(CLASS_NAMES)), fill_value=0)
    if splits is None:
        ax.bar(CLASS_NAMES, counts.values, color=PALETTE[: len(CLASS_NAMES)])
    else:
        by_split = pd.crosstab(pd.Series(splits, index=df.index)[classed.index], classed["expression"]).reindex(
            columns=range(len(CLASS_NAMES)), fill_value=0)
        bottom = np.zeros(len(CLASS_NAMES))
        for split in sorted(by_split.index, key=lambda s: (list(SPLIT_COLOURS).index(s) if s in SPLIT_COLOURS else 3)):
            values = by_split.loc[split].to_numpy()
            ax.bar(CLASS_NAMES, values, bottom=bottom, color=SPLIT_COLOURS.get(split, "grey"),
                   label=f"{split} ({int(values.sum())})")
            bottom += values
        if len(by_split):  # faces with valence/arousal alone have no class to stack
            ax.legend(fontsize=8)
    for x, count in enumerate(counts.values):
        ax.annotate(str(int(count)), (x, count), ha="center", va="bottom", fontsize=8)
    present = counts[counts > 0]
    title = "Expression classes"
    if len(present) > 1:
        title += f" (largest / smallest {present.max() / present.min():.1f}x)"
    unclassed = len(df) - len(classed)
    if unclassed:
        title += f"\n{unclassed} faces with none"
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)


def _va_histogram(ax, df: pd.DataFrame, name: str) -> None:
    values = df[name].dropna()
    ax.hist(values, bins=40, range=(-1, 1), color="tab:blue" if name == "valence" else "tab:red")
    ax.axvline(values.mean(), color="k", ls="--", label=f"mean {values.mean():+.3f}")
    ax.legend(fontsize=8)
    ax.set(title=f"{name.capitalize()} distribution", xlabel=name, ylabel="faces")


def _circumplex_panel(ax, df: pd.DataFrame) -> None:
    unclassed = df[df.expression == NO_EXPRESSION]
    if len(unclassed):
        ax.scatter(unclassed.valence, unclassed.arousal, s=8, alpha=0.4, color="black", marker="x",
                   linewidths=0.6, label="no class")
    for i, name in enumerate(CLASS_NAMES):
        sel = df[df.expression == i]
        if len(sel):
            ax.scatter(sel.valence, sel.arousal, s=6, alpha=0.6, color=PALETTE[i], label=name)
    ax.add_patch(plt.Circle((0, 0), 1, fill=False, color="grey", lw=0.8))
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.legend(fontsize=7, markerscale=2, ncol=2)
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), xlabel="valence", ylabel="arousal", title="Valence-arousal by class")
    ax.set_aspect("equal")


def _class_share_panel(ax, df: pd.DataFrame, splits: list[str]) -> None:
    """Each split's share of every class: where the test split's mix differs from train's, accuracy and macro-F1
    weigh classes differently than training did."""
    classed = df[df.expression != NO_EXPRESSION]
    split_of = pd.Series(splits, index=df.index)[classed.index]
    shares = pd.crosstab(split_of, classed["expression"], normalize="index").reindex(
        columns=range(len(CLASS_NAMES)), fill_value=0)
    present = [s for s in SPLIT_COLOURS if s in shares.index]
    width = 0.8 / len(present)
    x = np.arange(len(CLASS_NAMES))
    for i, split in enumerate(present):
        ax.bar(x + (i - (len(present) - 1) / 2) * width, shares.loc[split].to_numpy(), width,
               color=SPLIT_COLOURS[split], label=split)
    ax.set_xticks(x, CLASS_NAMES, rotation=45)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(fontsize=8)
    ax.set(title="Class shares by split", ylabel="share of the split's faces")


def _count_histogram(ax, values: pd.Series, colour: str) -> None:
    """A bar per value where there are few (every size a set was resized to), else a histogram of whole numbers."""
    counts = values.value_counts().sort_index()
    if len(counts) <= 12:
        ax.bar([str(v) for v in counts.index], counts.to_numpy(), color=colour)
    else:
        ax.hist(values, bins=min(40, int(values.max() - values.min()) + 1), color=colour)
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # counts of faces or groups


def _size_panel(ax, index: DatasetIndex) -> None:
    shorter = _face_sizes(index).min(axis=1)
    _count_histogram(ax, shorter, "tab:gray")
    ax.set(title=f"Face sizes (shorter side; median {shorter.median():.0f} px)", xlabel="pixels", ylabel="faces")


def _group_panel(ax, index: DatasetIndex) -> None:
    per_group = pd.Series([r.group for r in index.records if r.group is not None]).value_counts()
    _count_histogram(ax, per_group, "tab:purple")
    source = textwrap.fill(index.group_source or "subject", 48)  # a group_pattern can be long: wrap, not clip
    ax.set(title=f"Faces per group ({len(per_group)} groups)\n{source}", xlabel="faces",
           ylabel="groups")


def _rejected_panel(ax, index: DatasetIndex) -> None:
    counts = pd.Series(index.rejection_counts()).sort_values()
    ax.barh(counts.index, counts.to_numpy(), height=0.5, color="tab:red")
    for y, count in enumerate(counts.to_numpy()):
        ax.annotate(f" {int(count)}", (count, y), va="center", fontsize=8)
    ax.margins(x=0.15)
    ax.set_ylim(-1, len(counts))
    ax.set(title=f"Quarantined by reason ({len(index.rejected)})", xlabel="samples")


def plot_dataset_analysis(index: DatasetIndex, path: str | Path, seed: int = 0,
                          splits: pd.DataFrame | None = None) -> Path:
    """The classes (by split where one is known), valence and arousal where the data has them, face sizes where they
    vary, faces per group where the data is grouped, quarantine reasons where any, and a face of each class."""
    path = Path(path)
    df = records_frame(index)
    split_of = record_splits(index, splits)
    panels = analysis_panels(index, split_of)
    columns = {5: 3, 6: 3}.get(len(panels), min(4, len(panels)))
    rows = -(-len(panels) // columns)
    width = max(4.0 * columns, 10.0)
    faces_height = width / 8 + 0.5
    fig = plt.figure(figsize=(width, 4.4 * rows + faces_height + 0.6), constrained_layout=True)
    grid = fig.add_gridspec(rows + 1, columns, height_ratios=[4.4] * rows + [faces_height])
    sizes = _face_sizes(index).drop_duplicates()
    same_size = f"; every face {sizes.iloc[0, 0]} x {sizes.iloc[0, 1]} px" if len(sizes) == 1 else ""
    fig.suptitle(f"Dataset analysis: {index.given_as.name} ({len(df)} valid, {len(index.rejected)} rejected"
                 f"{same_size})", fontsize=14)
    draw = {"classes": lambda ax: _class_panel(ax, df, split_of),
            "class_shares": lambda ax: _class_share_panel(ax, df, split_of),
            "valence": lambda ax: _va_histogram(ax, df, "valence"),
            "arousal": lambda ax: _va_histogram(ax, df, "arousal"),
            "circumplex": lambda ax: _circumplex_panel(ax, df),
            "sizes": lambda ax: _size_panel(ax, index),
            "groups": lambda ax: _group_panel(ax, index),
            "rejected": lambda ax: _rejected_panel(ax, index)}
    for i, panel in enumerate(panels):
        draw[panel](fig.add_subplot(grid[i // columns, i % columns]))
    faces = grid[rows, :].subgridspec(1, 8)
    _sample_grid([fig.add_subplot(faces[0, i]) for i in range(8)], index, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def group_composition(index: DatasetIndex, values: np.ndarray) -> pd.DataFrame:
    """One row per group of the faces (``values``: each record's group by an attribute), in the order of their
    names: its faces, its people (where the data says who is who), its faces of each class and their mean valence
    and arousal (where annotated)."""
    df = records_frame(index).assign(group=values, person=[r.group for r in index.records])
    rows = []
    for group, faces in df.groupby("group", sort=False):
        row = {"group": group, "faces": len(faces)}
        if df["person"].notna().any():
            row["people"] = int(faces["person"].nunique())
        counts = faces["expression"].value_counts()
        row |= {name: int(counts.get(c, 0)) for c, name in enumerate(CLASS_NAMES)}
        row |= {f"{dim}_mean": round(float(faces[dim].mean()), 4) if faces[dim].notna().any() else None
                for dim in ("valence", "arousal")}
        rows.append(row)
    return pd.DataFrame(rows).sort_values("group", key=lambda groups: groups.map(group_order)).reset_index(drop=True)


def plot_group_composition(table: pd.DataFrame, attribute: str, path: str | Path) -> Path:
    """Each group's share of every class (:func:`group_composition`), one stacked bar a group, its faces above it:
    where groups' mixes differ, a score over all faces weighs them differently."""
    shares = table[list(CLASS_NAMES)].div(table[list(CLASS_NAMES)].sum(axis=1).replace(0, 1), axis=0)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(table) + 3), 4.5), layout="constrained")
    x, bottom = np.arange(len(table)), np.zeros(len(table))
    for c, name in enumerate(CLASS_NAMES):
        ax.bar(x, shares[name], bottom=bottom, color=PALETTE[c % len(PALETTE)], label=name)
        bottom += shares[name].to_numpy()
    for i, faces in enumerate(table["faces"]):
        ax.text(i, 1.01, str(faces), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [str(g) for g in table["group"]], rotation=30, ha="right")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set(ylim=(0, 1.08), ylabel="share of the group's faces", title=f"Classes by {attribute} (faces above)")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # as stacked
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def analyze(index: DatasetIndex, out_dir: str | Path, seed: int = 0, splits: pd.DataFrame | None = None,
            groups: dict[str, np.ndarray] | None = None) -> tuple[Path, Path]:
    """``dataset_analysis.png``, ``dataset_summary.json`` and ``quarantine.csv`` in ``out_dir``; with ``groups``
    (attribute -> each record's group), each attribute's :func:`group_composition` in the summary and in
    ``by_<attribute>.csv`` / ``.png``."""
    run = RunFolder(Path(out_dir))
    run.root.mkdir(parents=True, exist_ok=True)
    figure = plot_dataset_analysis(index, run.dataset_analysis, seed, splits)
    summary = dataset_summary(index, splits)
    for attribute, values in (groups or {}).items():
        table = group_composition(index, values)
        stem = run.root / attribute_file_stem(attribute)
        table.to_csv(stem.with_suffix(".csv"), index=False)
        plot_group_composition(table, attribute, stem.with_suffix(".png"))
        summary.setdefault("by", {})[attribute] = json.loads(table.to_json(orient="records"))
    run.dataset_summary.write_text(json.dumps(summary, indent=2))
    index.write_quarantine(run.quarantine)
    return figure, run.dataset_summary


def analyze_data(data: str | Path, out_dir: str | Path, config: Config, by: Sequence[str] = (),
                 attributes: Path | None = None) -> tuple[DatasetIndex, Path, Path]:
    """Read the data set at ``data`` as ``config`` says (layout, class_map, group_pattern) and analyse it into
    ``out_dir``: its index, ``dataset_analysis.png`` and ``dataset_summary.json`` (and ``quarantine.csv``); ``by``:
    attributes of the faces (from ``attributes``, the data set's own, or its manifest) whose groups' make-up is
    described too."""
    check_grouping(by, attributes)
    index = read_dataset(data, **reader_options(config))
    groups = {}
    if by:
        table, path = attribute_table(Path(data), attributes, index)
        groups = read_attributes(table, path, by, index.records, index.root)
    return (index, *analyze(index, out_dir, groups=groups))
