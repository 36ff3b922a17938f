"""The spec's model evaluator: predictions over a split, every metric, and the per-model files."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.table import Table

from affectkit.config import CLASS_NAMES, NO_EXPRESSION
from affectkit.data.datamodule import PreparedData, normalise_batch
from affectkit.evaluation.comparison import class_names_of
from affectkit.evaluation.metrics import VA_DIMENSIONS, compute_metrics
from affectkit.evaluation.plots import (
    plot_confident_mistakes,
    plot_confusion_matrix,
    plot_coverage,
    plot_reliability_diagram,
)
from affectkit.evaluation.selective import selective_accuracy
from affectkit.evaluation.significance import CONFIDENCE, GroupGap, ccc_interval, score_intervals
from affectkit.evaluation.subgroups import models_by_group
from affectkit.progress import reporter, silenced
from affectkit.runs import RunFolder


MISTAKES_SHOWN = 24  # the most confident mistakes drawn for a person to look at


@dataclass
class Predictions:
    logits: np.ndarray  # (N, 8)
    valence_arousal: np.ndarray  # (N, 2)
    # False for a valence/arousal model's (trained on faces without a class): its logits say nothing, are not scored.
    predicts_expression: bool = True
    # False for an expression model's (trained on faces without valence/arousal): its valence/arousal are not scored.
    predicts_valence_arousal: bool = True

    @property
    def probs(self) -> np.ndarray:
        z = self.logits - self.logits.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    @classmethod
    def from_probs(cls, probs: np.ndarray, valence_arousal: np.ndarray, predicts_expression: bool = True,
                   predicts_valence_arousal: bool = True) -> Predictions:
        """Predictions of a combination that gives probabilities (an ensemble, a fusion): their logs as logits."""
        return cls(np.log(np.clip(probs, 1e-12, None)), valence_arousal, predicts_expression,
                   predicts_valence_arousal)

    def tempered(self, temperature: float) -> Predictions:
        """The same predictions with the logits divided by ``temperature`` (as ``predict_split`` would give them)."""
        return replace(self, logits=self.logits / temperature)


def evaluation_device() -> str:
    """Where saved models are loaded to be scored: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _channels_last(model: torch.nn.Module) -> None:
    """``model`` in eval mode and the channels-last layout. Converted outside inference mode, so that its weights
    stay ordinary tensors: autograd (Grad-CAM, further training) can still go through the model afterwards."""
    with torch.inference_mode(False):
        model.eval().to(memory_format=torch.channels_last)


@torch.inference_mode()
def predict_split(model: torch.nn.Module, data: PreparedData, positions: np.ndarray, batch_size: int = 64,
                  progress: bool = True, temperature: float = 1.0, tta_flip: bool = False) -> Predictions:
    """Logits (divided by ``temperature``) and valence/arousal for ``positions``; ``tta_flip`` averages each image's
    outputs with its mirror image's (faces are near-symmetric; the training augmentation flips them too)."""
    with silenced(not progress):
        _channels_last(model)
        device = next(model.parameters()).device
        logits, va = [], []
        batches = range(0, len(positions), batch_size)
        for start in reporter().track(batches, total=len(batches), description="Predicting"):
            idx = np.sort(positions[start : start + batch_size])  # sorted reads are kinder to a memory map
            order = np.argsort(np.argsort(positions[start : start + batch_size]))
            # uint8 NHWC travels to the device; permuted to NCHW it already has the channels-last layout.
            x = normalise_batch(torch.from_numpy(np.asarray(data.images[idx])).to(device).permute(0, 3, 1, 2))
            out_logits, valence, arousal = model(x)
            if tta_flip:
                flipped = model(x.flip(3))
                out_logits, valence, arousal = ((a + b) / 2 for a, b in zip((out_logits, valence, arousal), flipped))
            logits.append(out_logits.float().cpu().numpy()[order] / temperature)
            va.append(torch.stack([valence, arousal], 1).float().cpu().numpy()[order])
        return Predictions(np.concatenate(logits), np.concatenate(va), getattr(model, "predicts_expression", True),
                           getattr(model, "predicts_valence_arousal", True))


@torch.inference_mode()
def inference_ms_per_image(model: torch.nn.Module, img_size: int, batch: int = 16, repeats: int = 3) -> float:
    """Wall-clock milliseconds per image of a batched forward pass on this machine (after one warm-up)."""
    _channels_last(model)
    device = next(model.parameters()).device
    x = torch.randn(batch, 3, img_size, img_size, device=device).contiguous(memory_format=torch.channels_last)
    model(x)
    model(x)  # oneDNN picks its kernels over the first calls
    start = time.perf_counter()
    for _ in range(repeats):
        model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / (repeats * batch) * 1000


def score(pred: Predictions, data: PreparedData, positions: np.ndarray) -> dict:
    """Every metric of ``pred`` on ``positions``; a valence/arousal model's expression and an expression model's
    valence/arousal are not scored (None)."""
    labels = data.expression[positions] if pred.predicts_expression else np.full(len(positions), NO_EXPRESSION)
    truth = data.valence_arousal[positions] if pred.predicts_valence_arousal else np.full((len(positions), 2), np.nan)
    metrics = compute_metrics(pred.probs, labels, pred.valence_arousal, truth)
    groups = face_groups(data, positions)
    about = {"confidence": CONFIDENCE, "resampled": "faces" if groups is None else "people"}
    if metrics["expression"] is not None:
        intervals = score_intervals(labels, pred.probs.argmax(axis=1), groups)
        metrics["expression"]["intervals"] = {**about, **{key: list(bounds) for key, bounds in intervals.items()}}
        classed = labels != NO_EXPRESSION
        metrics["expression"]["coverage"] = selective_accuracy(pred.probs[classed], labels[classed])
    for column, dim in enumerate(VA_DIMENSIONS):
        if metrics.get(dim) and (ccc := ccc_interval(pred.valence_arousal[:, column], truth[:, column], groups)):
            metrics[dim]["intervals"] = {**about, "ccc": list(ccc)}
    return metrics


def score_by_group(pred: Predictions, data: PreparedData, positions: np.ndarray,
                   values: np.ndarray) -> tuple[pd.DataFrame, GroupGap | None]:
    """``pred``'s scores on each group of the faces at ``positions`` (``values``: each one's group by an attribute),
    scored as :func:`score` scores them all (:func:`group_scores`), and its widest gap in accuracy between groups."""
    labels = data.expression[positions] if pred.predicts_expression else np.full(len(positions), NO_EXPRESSION)
    answers = {"model": (pred.probs.argmax(axis=1) if pred.predicts_expression else None,
                         pred.valence_arousal if pred.predicts_valence_arousal else None)}
    tables, gaps = models_by_group(values, labels, face_groups(data, positions), answers,
                                   data.valence_arousal[positions])
    return tables["model"], gaps["model"]


def face_groups(data: PreparedData, positions: np.ndarray) -> np.ndarray | None:
    """The person of each face at ``positions``, where the data says who is who (a face of no known person is its
    own); None where it never does. A bootstrap then draws people, not faces."""
    records = [data.records[i] for i in positions]
    if all(r.group is None for r in records):
        return None
    return np.array([r.group if r.group is not None else f"face {r.id}" for r in records], dtype=object)


def face_predictions(pred: Predictions, data: PreparedData, positions: np.ndarray) -> pd.DataFrame:
    """One row per face at ``positions``: its id, file, person (where known), class, valence and arousal (blank
    where not annotated), and the model's class, the probability it gave it and every class's, and its valence and
    arousal (where the model predicts them)."""
    records = [data.records[i] for i in positions]
    table = {"id": [r.id for r in records], "path": [str(r.image_path) for r in records]}
    if any(r.group is not None for r in records):
        table["person"] = [r.group or "" for r in records]
    truth = data.valence_arousal[positions]
    table |= {"expression": class_names_of(data.expression[positions]), "valence": truth[:, 0], "arousal": truth[:, 1]}
    if pred.predicts_expression:
        probs = pred.probs
        table |= {"predicted": class_names_of(probs.argmax(axis=1)), "confidence": probs.max(axis=1),
                  **{f"p_{name}": probs[:, c] for c, name in enumerate(CLASS_NAMES)}}
    if pred.predicts_valence_arousal:
        table |= {"predicted_valence": pred.valence_arousal[:, 0], "predicted_arousal": pred.valence_arousal[:, 1]}
    return pd.DataFrame(table)


def _mistakes(faces: pd.DataFrame) -> pd.DataFrame:
    """The faces (:func:`face_predictions`) with a class that the model gave another, the most confident first."""
    wrong = faces[(faces["expression"] != "") & (faces["predicted"] != faces["expression"])]
    return wrong.sort_values("confidence", ascending=False, kind="stable")


def write_model_report(name: str, metrics: dict, pred: Predictions, data: PreparedData, positions: np.ndarray,
                       out_dir: Path) -> dict[str, Path]:
    """``<Model>_metrics.json`` and ``<Model>_predictions.csv`` (:func:`face_predictions`), and where faces have a
    class ``<Model>_confusion_matrix.png``, ``<Model>_reliability.png`` and ``<Model>_mistakes.png``, its most
    confident mistakes, where a mislabelled face is often found."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run = RunFolder(out_dir)
    paths = {"metrics": run.metrics(name), "predictions": run.face_predictions(name)}
    paths["metrics"].write_text(json.dumps(metrics, indent=2))
    faces = face_predictions(pred, data, positions)
    faces.to_csv(paths["predictions"], index=False, float_format="%.4f")
    if metrics["expression"] is None:
        return paths
    paths.update(confusion_matrix=run.confusion_matrix(name), reliability=run.reliability(name),
                 mistakes=run.mistakes(name))
    plot_confusion_matrix(np.asarray(metrics["expression"]["confusion_matrix"]), list(CLASS_NAMES),
                          paths["confusion_matrix"], f"{name}: confusion matrix (row-normalised)")
    labels = data.expression[positions]
    with_class = labels != NO_EXPRESSION
    plot_reliability_diagram(pred.probs[with_class], labels[with_class], paths["reliability"], f"{name}: reliability")
    paths["coverage"] = plot_coverage(pred.probs[with_class], labels[with_class], metrics["expression"]["coverage"],
                                      run.coverage(name), f"{name}: accuracy when answering only its surest faces")
    wrong = _mistakes(faces)
    shown = wrong.head(MISTAKES_SHOWN)
    plot_confident_mistakes(data.images[positions[shown.index.to_numpy()]], shown["expression"], shown["predicted"],
                            shown["confidence"], paths["mistakes"],
                            f"{name}: its {len(shown)} most confident mistakes of {len(wrong)} (class -> the model's, "
                            "its probability); such faces are often mislabelled")
    return paths


def metrics_table(name: str, metrics: dict) -> Table:
    """The headline numbers of one evaluation, for the console."""
    e = metrics["expression"]
    with_class = 0 if e is None else e["n"]
    note = "" if with_class == metrics["n"] else f" ({with_class} with an expression class)"
    table = Table(title=f"{name} on {metrics['n']} images{note}")
    intervals = (e or {}).get("intervals", {})
    shown_intervals = [part["intervals"] for part in (e, metrics.get("valence"), metrics.get("arousal"))
                       if part and "intervals" in part]
    table.add_column("metric")
    table.add_column("value", justify="right")
    if shown_intervals:
        table.add_column(f"{shown_intervals[0]['confidence']:.0%} interval", justify="right")

    def interval_cell(bounds: list[float] | None) -> list[str]:
        """The row's interval cell, where the table has the column."""
        return [f"{bounds[0]:.3f} to {bounds[1]:.3f}" if bounds else ""] if shown_intervals else []

    for key in ("accuracy", "top2_accuracy", "top3_accuracy", "macro_f1", "balanced_accuracy", "ece") if e else ():
        table.add_row(f"expression {key}", f"{e[key]:.4f}", *interval_cell(intervals.get(key)))
    for dim in ("valence", "arousal"):
        if metrics.get(dim):
            for key in ("rmse", "mae", "pcc", "ccc", "sagr"):
                table.add_row(f"{dim} {key}", f"{metrics[dim][key]:.4f}",
                              *interval_cell(metrics[dim].get("intervals", {}).get(key)))
    return table
