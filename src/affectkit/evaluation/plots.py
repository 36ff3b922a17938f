"""The report's figures; every function writes one PNG and returns its path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

# Figures are written to files, often on machines without a display.
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402

from affectkit.evaluation.metrics import ECE_BINS, expected_calibration_error, reliability_curve
from affectkit.evaluation.selective import coverage_curve

DPI = 120
MIN_ANSWERED = 10  # the coverage curve starts at this many faces answered
TRAIN_COLOUR, VAL_COLOUR = "tab:blue", "tab:orange"

SCORE_COLUMNS = {
    "accuracy": "Accuracy", "top2_accuracy": "Top-2 acc.", "macro_f1": "Macro-F1",
    "valence_ccc": "Valence CCC", "arousal_ccc": "Arousal CCC", "valence_pcc": "Valence PCC",
    "arousal_pcc": "Arousal PCC", "valence_sagr": "Valence SAGR", "arousal_sagr": "Arousal SAGR",
}
ERROR_COLUMNS = {"valence_rmse": "Valence RMSE", "arousal_rmse": "Arousal RMSE",
                 "valence_mae": "Valence MAE", "arousal_mae": "Arousal MAE"}
COST_COLUMNS = {"params_millions": "Parameters (M)", "train_time_s": "Training time (s)",
                "inference_ms_per_image": "Inference (ms / image)"}


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_yticks([])


def plot_coverage(probs: ArrayLike, targets: ArrayLike, points: Sequence[dict], path: str | Path,
                  title: str) -> Path:
    """Accuracy on the faces answered against the share answered, the surest first (:func:`coverage_curve`), with
    the confidence each share needs marked at ``points`` (:func:`selective_accuracy`)."""
    answered, accuracy, _ = coverage_curve(probs, targets)
    fig, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
    if len(answered):
        steady = answered >= min(MIN_ANSWERED, len(answered))  # the accuracy of the surest few faces is noise
        ax.plot(answered[steady] / len(answered), accuracy[steady], color=TRAIN_COLOUR)
        ax.axhline(accuracy[-1], color="grey", linestyle="--", linewidth=0.8, label="answering every face")
        for point in points:
            ax.plot(point["coverage"], point["accuracy"], "o", color=VAL_COLOUR)
            ax.annotate(f"p >= {point['min_confidence']:.2f}", (point["coverage"], point["accuracy"]),
                        textcoords="offset points", xytext=(4, 6), fontsize=7)
        ax.legend(fontsize=8, loc="lower left")
    else:
        _no_data(ax)
    ax.set(xlim=(0, 1.02), xlabel="share of the faces answered (the surest first)", ylabel="accuracy on them",
           title=title)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.invert_xaxis()  # from answering every face to answering the surest few
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confident_mistakes(images: np.ndarray, true: Sequence[str], predicted: Sequence[str],
                            confidence: Sequence[float], path: str | Path, title: str) -> Path:
    """A grid of faces (``images``: (N, S, S, 3) uint8), each captioned with its class, the class the model gave it
    and the probability it gave that class."""
    columns = min(6, max(len(images), 1))
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.2 * rows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, truth, answer, p in zip(axes.ravel(), images, true, predicted, confidence):
        ax.imshow(image)
        ax.set_title(f"{truth} -> {answer}\n{p:.2f}", fontsize=8)
    if not len(images):
        _no_data(axes[0, 0])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _cell_labels(counts: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    return np.array([[f"{f:.0%}\n{c}" for f, c in zip(fr, co)] for fr, co in zip(fractions, counts)])


def plot_confusion_matrix(cm_counts: ArrayLike, class_names: Sequence[str], path: str | Path,
                          title: str = "Confusion matrix") -> Path:
    """Row-normalised heatmap (each row sums to 100 %), each cell annotated with its percentage and count."""
    counts = np.asarray(cm_counts, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    size = 1.0 + 0.9 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(fractions, annot=_cell_labels(counts, fractions), fmt="", cmap="Blues", vmin=0.0, vmax=1.0,
                xticklabels=class_names, yticklabels=class_names, square=True, linewidths=0.5,
                cbar_kws={"label": "fraction of the true class"}, annot_kws={"fontsize": 8}, ax=ax)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    ax.tick_params(axis="y", rotation=0)
    return _save(fig, path)


def _plot_series(ax: Axes, history: pd.DataFrame, column: str, label: str, colour: str,
                 linestyle: str = "-", marker: str = "o") -> bool:
    """One curve against the epoch, skipping NaNs; False when the column is absent or empty."""
    if column not in history:
        return False
    points = history[["epoch", column]].dropna()
    if points.empty:
        return False
    ax.plot(points["epoch"], points[column], label=label, color=colour, linestyle=linestyle, marker=marker,
            markersize=3)
    return True


def _phase_two_start(history: pd.DataFrame) -> float | None:
    """Midway between the last phase-1 epoch and the first phase-2 one (or at the latter if there is no phase 1)."""
    if "phase" not in history or not (history["phase"] == 2).any():
        return None
    first_two = history.loc[history["phase"] == 2, "epoch"].min()
    before = history.loc[history["epoch"] < first_two, "epoch"]
    return (before.max() + first_two) / 2 if not before.empty else float(first_two)


def _finish_panel(ax: Axes, drew: bool, phase_two: float | None, ylabel: str) -> None:
    if not drew:
        _no_data(ax)
    if phase_two is not None:
        ax.axvline(phase_two, color="grey", linestyle="--", linewidth=1, label="fine-tuning starts")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if drew:
        ax.legend(fontsize=8)


def plot_training_history(history: pd.DataFrame, path: str | Path, title: str = "Training history") -> Path:
    """Loss, expression accuracy and valence/arousal MAE per epoch (train and val), and the learning rate."""
    fig = plt.figure(figsize=(16, 6.5))
    grid = fig.add_gridspec(2, 3, height_ratios=(3, 1), hspace=0.35, wspace=0.25)
    lr_ax = fig.add_subplot(grid[1, :])
    # A shared epoch axis keeps the panels aligned, including any left empty.
    loss_ax, acc_ax, mae_ax = (fig.add_subplot(grid[0, i], sharex=lr_ax) for i in range(3))
    phase_two = _phase_two_start(history)

    for ax, stem, ylabel, panel in ((loss_ax, "loss", "total loss", "Loss"),
                                    (acc_ax, "acc", "accuracy", "Expression accuracy")):
        drew = _plot_series(ax, history, f"train_{stem}", "train", TRAIN_COLOUR)
        drew |= _plot_series(ax, history, f"val_{stem}", "val", VAL_COLOUR)
        _finish_panel(ax, drew, phase_two, ylabel)
        ax.set_title(panel)

    drew = False
    # Colour tells the split, as in the other panels; line style tells the dimension.
    for dim, linestyle, marker in (("valence", "-", "o"), ("arousal", ":", "^")):
        drew |= _plot_series(mae_ax, history, f"train_{dim}_mae", f"train {dim}", TRAIN_COLOUR, linestyle, marker)
        drew |= _plot_series(mae_ax, history, f"val_{dim}_mae", f"val {dim}", VAL_COLOUR, linestyle, marker)
    _finish_panel(mae_ax, drew, phase_two, "MAE")
    mae_ax.set_title("Valence / arousal MAE")

    lr = history[["epoch", "lr"]].dropna() if "lr" in history else pd.DataFrame()
    lr = lr[lr["lr"] > 0] if not lr.empty else lr
    if lr.empty:
        _no_data(lr_ax)
    else:
        lr_ax.plot(lr["epoch"], lr["lr"], color="tab:green", marker="o", markersize=3)
        lr_ax.set_yscale("log")
    if phase_two is not None:
        lr_ax.axvline(phase_two, color="grey", linestyle="--", linewidth=1)
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("epoch")
    lr_ax.grid(alpha=0.3, which="both")
    fig.suptitle(title)
    return _save(fig, path)


def _present(df: pd.DataFrame, columns: dict[str, str]) -> dict[str, str]:
    """The columns that exist and hold at least one number."""
    return {c: label for c, label in columns.items() if c in df and df[c].notna().any()}


def _grouped_bars(ax: Axes, df: pd.DataFrame, columns: dict[str, str]) -> None:
    """One group per metric, one bar per model; a ``<metric>_std`` column (a cross-validation's) is drawn as an
    error bar, as are ``<metric>_low`` / ``<metric>_high`` (a test split's bootstrap interval)."""
    if not columns:
        _no_data(ax)
        ax.set_xticks([])
        return
    x = np.arange(len(columns))
    width = 0.8 / len(df)
    scores = df[list(columns)].to_numpy(dtype=float)
    errors = _error_bars(df, list(columns), scores)
    for i, (model, row) in enumerate(zip(df["model"], scores)):
        ax.bar(x + (i - (len(df) - 1) / 2) * width, row, width, label=str(model),
               yerr=None if np.isnan(errors[i]).all() else errors[i], capsize=2)
    ax.set_xticks(x, list(columns.values()))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside, clear of the bars


def _error_bars(df: pd.DataFrame, columns: list[str], scores: np.ndarray) -> np.ndarray:
    """(models, 2, metrics): each bar's distance down and up to its interval's ends; NaN where the table has none."""
    bars = np.full((len(df), 2, len(columns)), np.nan)
    for j, column in enumerate(columns):
        if {f"{column}_low", f"{column}_high"} <= set(df.columns):
            bars[:, 0, j] = scores[:, j] - df[f"{column}_low"].to_numpy(dtype=float)
            bars[:, 1, j] = df[f"{column}_high"].to_numpy(dtype=float) - scores[:, j]
        elif f"{column}_std" in df.columns:
            bars[:, :, j] = df[f"{column}_std"].to_numpy(dtype=float)[:, None]
    # A percentile interval may sit wholly to one side of the score (macro-F1 on a few faces): no bar below 0.
    return np.maximum(bars, 0)


def _format_value(value: float) -> str:
    if not np.isfinite(value):
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _cost_bars(ax: Axes, df: pd.DataFrame, column: str, label: str) -> None:
    values = df[column].to_numpy(dtype=float)
    colours = [f"C{i % 10}" for i in range(len(df))]
    bars = ax.bar(np.arange(len(df)), values, color=colours)
    ax.bar_label(bars, labels=[_format_value(v) for v in values], fontsize=8)
    ax.set_xticks(np.arange(len(df)), [str(m) for m in df["model"]], rotation=30, ha="right")
    ax.set_title(label)
    ax.margins(y=0.15)  # room for the value labels
    ax.grid(axis="y", alpha=0.3)


def plot_model_comparison(df: pd.DataFrame, path: str | Path) -> Path:
    """Grouped bars per model: scores (higher is better), errors (lower is better), and costs."""
    scores, errors, costs = _present(df, SCORE_COLUMNS), _present(df, ERROR_COLUMNS), _present(df, COST_COLUMNS)
    n_cost = max(len(costs), 1)
    fig = plt.figure(figsize=(max(12.0, 0.3 * len(scores) * len(df)), 13), layout="constrained")
    grid = fig.add_gridspec(3, n_cost)
    score_ax = fig.add_subplot(grid[0, :])
    _grouped_bars(score_ax, df, scores)
    score_ax.set_title("Scores (higher is better)")
    error_ax = fig.add_subplot(grid[1, :])
    _grouped_bars(error_ax, df, errors)
    error_ax.set_title("Valence / arousal errors (lower is better)")
    if costs:
        # Parameters, seconds and milliseconds share no scale, so each cost gets its own axis.
        for i, (column, label) in enumerate(costs.items()):
            _cost_bars(fig.add_subplot(grid[2, i]), df, column, label)
    else:
        cost_ax = fig.add_subplot(grid[2, :])
        _no_data(cost_ax)
        cost_ax.set_title("Cost")
    fig.suptitle("Model comparison")
    return _save(fig, path)


BENCHMARK_COLUMNS = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "balanced_accuracy": "Balanced accuracy"}
CCC_COLUMNS = {"valence_ccc": "Valence CCC", "arousal_ccc": "Arousal CCC"}


def plot_benchmark(df: pd.DataFrame, path: str | Path, title: str = "Benchmark on the test split",
                   columns: dict[str, str] | None = None) -> Path:
    """Scores of each row of a benchmark table (one bar per ``model``): ``columns`` (name -> label), by default
    accuracy, macro-F1 and balanced accuracy, or the valence/arousal CCCs where no row has those (valence/arousal
    models)."""
    fig, ax = plt.subplots(figsize=(max(8.0, 1.2 * len(df) + 4), 4.5), layout="constrained")
    shown = _present(df, columns or BENCHMARK_COLUMNS) or (_present(df, CCC_COLUMNS) if columns is None else {})
    _grouped_bars(ax, df, shown)
    lowest = np.nanmin(df[list(shown)].to_numpy(dtype=float)) if shown else 0.0
    ax.set_ylim(min(0.0, lowest - 0.05), 1)  # a CCC can be negative
    ax.set_title(title)
    return _save(fig, path)


def plot_group_scores(tables: dict[str, pd.DataFrame], attribute: str, path: str | Path) -> Path:
    """Each model's accuracy on each group of faces by ``attribute`` (``tables``: model -> its
    :func:`~affectkit.evaluation.subgroups.group_scores`), with its interval: one cluster of bars per group; the
    valence and arousal CCCs where no model has an accuracy."""
    everything = pd.concat(tables.values(), ignore_index=True)
    metrics = _present(everything, {"accuracy": "Accuracy"}) or _present(everything, CCC_COLUMNS)
    groups = [str(g) for g in dict.fromkeys(everything["group"])]
    fig, axes = plt.subplots(max(len(metrics), 1), 1, squeeze=False, layout="constrained",
                             figsize=(max(8.0, 0.6 * len(groups) * len(tables) + 4), 3.5 * max(len(metrics), 1)))
    if not metrics:
        _no_data(axes[0, 0])
    for ax, (metric, label) in zip(axes[:, 0], metrics.items()):
        rows = []
        for model, table in tables.items():
            row = {"model": model}
            for group, value, low, high in table.reindex(
                    columns=["group", metric, f"{metric}_low", f"{metric}_high"]).itertuples(index=False):
                row |= {str(group): value, f"{group}_low": low, f"{group}_high": high}
            rows.append(row)
        wide = pd.DataFrame(rows)
        _grouped_bars(ax, wide, _present(wide, {group: group for group in groups}))
        ax.set_ylabel(label)
        ax.set_title(f"{label} by {attribute}")
    return _save(fig, path)


def plot_frame_importance(frames: pd.DataFrame, path: str | Path, title: str, clips: int = 12) -> Path:
    """Per clip of ``frames`` (the first ``clips``; :func:`affectkit.temporal.explain.frame_importance` rows), each
    frame's importance to the clip's answered expression as bars over time (green: the answer leans on it; red: it
    argues against), and the face model's own probability of that expression for the frame as a line; for a model of
    valence and arousal alone, each frame's pull on them."""
    ids = list(dict.fromkeys(frames["id"]))[:clips]
    columns = min(3, len(ids))
    rows = -(-len(ids) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.6 * rows), layout="constrained",
                             squeeze=False)
    for ax in axes.flat[len(ids):]:
        ax.set_axis_off()
    for ax, clip in zip(axes.flat, ids):
        mine = frames[frames["id"] == clip]
        times = mine["time"].to_numpy(dtype=float)
        width = 0.8 * (float(np.min(np.diff(times))) if len(times) > 1 else 1.0)
        if "importance" in mine and mine["importance"].notna().any():
            values = mine["importance"].to_numpy(dtype=float)
            ax.bar(times, values, width=width, color=np.where(values >= 0, "tab:green", "tab:red"))
            ax.set_ylabel("importance")
            face = ax.twinx()
            face.plot(times, mine["face_p_answered"], color="grey", marker=".", lw=1)
            face.set_ylim(0, 1)
            face.set_ylabel("face model's p", color="grey")
            ax.set_title(f"{clip}: {mine['clip_expression'].iloc[0]}", fontsize=9)
        elif any(f"{t}_pull" in mine and mine[f"{t}_pull"].notna().any() for t in ("valence", "arousal")):
            for offset, target in ((-0.25, "valence"), (0.25, "arousal")):
                if f"{target}_pull" in mine:
                    ax.bar(times + offset * width, mine[f"{target}_pull"], width=width / 2, label=target)
            ax.legend(fontsize=7)
            ax.set_ylabel("pull")
            ax.set_title(str(clip), fontsize=9)
        else:
            _no_data(ax)
            ax.set_title(f"{clip}: one frame, nothing to leave out", fontsize=9)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlabel("time (s)")
    fig.suptitle(title)
    return _save(fig, path)


MODALITY_VALUES = {"importance": "importance to the answered expression", "valence_pull": "pull on valence",
                   "arousal_pull": "pull on arousal"}


def plot_modality_importance(modalities: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Per value of ``modalities`` (:func:`affectkit.multimodal.explain.modality_importance` rows: each sample's
    modality ``importance`` and ``valence_pull`` / ``arousal_pull``), each modality's values over the samples as a
    box with every sample's point, and their mean as a diamond."""
    shown = [column for column in MODALITY_VALUES if column in modalities]
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(4.2 * max(1, len(shown)), 3.2), layout="constrained",
                             squeeze=False)
    order = list(dict.fromkeys(modalities["modality"]))
    for ax, column in zip(axes.flat, shown):
        sns.boxplot(data=modalities, x="modality", y=column, order=order, ax=ax, color="lightgrey", fliersize=0)
        sns.stripplot(data=modalities, x="modality", y=column, order=order, ax=ax, color="tab:blue", size=3,
                      alpha=0.6)
        means = modalities.groupby("modality")[column].mean().reindex(order)
        ax.scatter(range(len(order)), means.to_numpy(), marker="D", color="black", zorder=3, label="mean")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(MODALITY_VALUES[column], fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("without it -> with it")
        ax.legend(fontsize=7)
    if not shown:
        _no_data(axes.flat[0])
    fig.suptitle(title)
    return _save(fig, path)


def plot_face_maps(faces: Sequence[np.ndarray], titles: Sequence[str], path: str | Path, title: str,
                   columns: int = 8) -> Path:
    """Face images (uint8 RGB, a map laid over each) in a grid, each under its title."""
    rows = max(1, -(-len(faces) // columns))
    shown = min(columns, max(1, len(faces)))
    fig, axes = plt.subplots(rows, shown, figsize=(1.9 * shown, 2.3 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, face, label in zip(axes.flat, faces, titles):
        ax.imshow(face)
        ax.set_title(label, fontsize=7)
    if not faces:
        _no_data(axes[0, 0])
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_robustness(table: pd.DataFrame, score: pd.Series | None, label: str, path: str | Path,
                    title: str = "Robustness to corrupted faces") -> Path:
    """One line per corruption: ``score`` (``label``, one value per row of ``table``; None where nothing was scored)
    from the clean faces (severity 0, a row of ``table``) through each severity; the clean accuracy's interval shaded
    where it has one."""
    clean = table["severity"] == 0
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    if score is None:
        _no_data(ax)
        return _save(fig, path)
    if "accuracy_low" in table:
        ax.axhspan(float(table.loc[clean, "accuracy_low"].iloc[0]), float(table.loc[clean, "accuracy_high"].iloc[0]),
                   color="grey", alpha=0.2, label="clean, 95% interval")
    clean_score = float(score[clean].iloc[0])
    for corruption in dict.fromkeys(table.loc[~clean, "corruption"]):
        rows = table["corruption"] == corruption
        severities = [0, *table.loc[rows, "severity"].astype(int)]
        ax.plot(severities, [clean_score, *score[rows]], marker="o", label=str(corruption))
    ax.set_xticks(sorted({0, *table["severity"].astype(int)}))
    ax.set_xlabel("severity (0: clean)")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_reliability_diagram(probs: ArrayLike, targets: ArrayLike, path: str | Path,
                             title: str = "Reliability diagram", n_bins: int = ECE_BINS) -> Path:
    """Accuracy against confidence per confidence bin, with the share of samples per bin underneath."""
    confidence, accuracy, count = reliability_curve(probs, targets, n_bins)
    ece = expected_calibration_error(probs, targets, n_bins)
    centres = (np.arange(n_bins) + 0.5) / n_bins
    occupied = count > 0
    fig, (ax, hist_ax) = plt.subplots(2, 1, figsize=(6, 7), sharex=True, height_ratios=(3, 1))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    ax.bar(centres[occupied], accuracy[occupied], width=1 / n_bins, edgecolor="black", color="tab:blue",
           alpha=0.8, label="accuracy")
    # Hatched, not filled, so the gap stays readable when it overlaps the accuracy bar (under-confidence).
    ax.bar(centres[occupied], confidence[occupied] - accuracy[occupied], bottom=accuracy[occupied],
           width=1 / n_bins, fill=False, hatch="//", edgecolor="tab:red", label="gap to mean confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE = {ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    hist_ax.bar(centres, count / max(count.sum(), 1), width=1 / n_bins, color="tab:grey", edgecolor="black")
    hist_ax.set_xlabel("confidence (top-1 probability)")
    hist_ax.set_ylabel("share of samples")
    hist_ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_feedback_over_time(periods: pd.DataFrame, path: str | Path,
                            title: str = "Served model against the reported truth") -> Path:
    """Per period (its start in ``period``): expression accuracy over the reports that gave one (each point
    labelled with their count), and valence/arousal MAE, where reported."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    rated = periods.dropna(subset=["accuracy"])
    if len(rated):
        top.plot(rated["period"], rated["accuracy"], marker="o", color="tab:blue")
        for when, accuracy, n in zip(rated["period"], rated["accuracy"], rated["expression_reports"]):
            top.annotate(f"{int(n)}", (when, accuracy), textcoords="offset points", xytext=(0, 6), ha="center",
                         fontsize=8, color="grey")
        top.set_ylim(0, 1.08)
        top.set_ylabel("expression accuracy\n(over the reports counted)")
    else:
        _no_data(top)
    drew = False
    for column, colour in (("valence_mae", "tab:orange"), ("arousal_mae", "tab:green")):
        values = periods.dropna(subset=[column]) if column in periods else periods.iloc[:0]
        if len(values):
            bottom.plot(values["period"], values[column], marker="o", color=colour, label=column.split("_")[0])
            drew = True
    if drew:
        bottom.set_ylim(bottom=0)
        bottom.set_ylabel("MAE")
        bottom.legend(frameon=False)
    else:
        _no_data(bottom)
    top.set_title(title)
    fig.autofmt_xdate()
    return _save(fig, path)
