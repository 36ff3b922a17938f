"""``affectkit explain``: where a saved model looks (Grad-CAM or occlusion maps, :mod:`affectkit.inference.explain`).

On photos (``explain_images``): each face as the model is served it (found, aligned and cropped as ``predict`` does),
its map laid over it beside the plain crop, a table of what the model answered and how much of the map falls on the
upper face, and one figure of them all. On a data set (``explain_data``): the faces ``evaluate`` scores (the model's
test split by default), the mean face and mean map of each class, to see what each expression is read from (the
mouth for Happy, the eyes and brows for Surprise) and whether a class is read from something other than the face.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd

from affectkit.atomic import atomic_path
from affectkit.config import CLASS_NAMES, MAP_METHODS, NO_EXPRESSION
from affectkit.errors import AffectkitError
from affectkit.evaluation.plots import plot_face_maps
from affectkit.inference.explain import (
    VALENCE_AROUSAL,
    check_layer,
    check_target,
    class_index,
    explain_image,
    grad_cam,
    map_peaks,
    occlusion,
    overlay,
    png_bytes,
    resolved_layer,
    upper_half_share,
)
from affectkit.inference.predictor import Predictor, input_normalization, preprocess
from affectkit.progress import reporter, silenced

if TYPE_CHECKING:
    from affectkit.data.datamodule import PreparedData

PREDICTED, LABEL = "predicted", "label"  # targets: the class the model answers, the class the data set gives
PANEL_SIDE = 192  # a face and its map are shown at least this large
FIGURE_FACES = 32  # explanations.png shows the first faces, at most this many
BATCH = 16
# The faces of each class a run's or a benchmark's report maps its model on: a mean map settles within tens, and a
# large test split costs no more than a small one.
REPORTED_PER_CLASS = 50


@dataclass
class ExplainResult:
    table: pd.DataFrame  # one row per face (photos) or per class (a data set)
    paths: dict[str, Path]
    notes: list[str]


def check_data_target(target: str, class_names: Sequence[str], trained: Sequence[str],
                      predicts_valence_arousal: bool, labelled: bool) -> None:
    """:func:`check_target`, and ``label`` (each face's class as a data set gives it) only where ``labelled``."""
    if target == LABEL:
        if not labelled:
            raise AffectkitError("--target label explains each face's class as a data set gives it: use it with "
                                 "--data.")
        target = PREDICTED  # which asks what label asks of the model: that it predicts classes
    check_target(target, class_names, trained, predicts_valence_arousal)


def _panel(crop: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """The crop and the crop under its map, side by side, scaled up to at least ``PANEL_SIDE`` pixels high."""
    side = crop.shape[0]
    both = np.hstack([crop, overlay(crop, heatmap)])
    scale = max(1, -(-PANEL_SIDE // side))
    return cv2.resize(both, (both.shape[1] * scale, side * scale), interpolation=cv2.INTER_NEAREST)


def _write_png(path: Path, image: np.ndarray) -> Path:
    png = png_bytes(image, str(path))
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
    return path


def _images_of(inputs: Sequence[Path]) -> Iterator[tuple[Path, np.ndarray | None, str]]:
    """Per file of ``inputs``: its image, or None and why it is not read (``error: ...``, naming the file)."""
    from affectkit.inference.images import read_image
    from affectkit.inference.media import expand_inputs, is_video

    files = expand_inputs(list(inputs), videos=False)
    if not files:
        raise AffectkitError("No images to explain: the inputs are empty (or folders without images).")
    for file in reporter().track(files, description="Explaining"):
        if is_video(file):
            yield file, None, f"error: {file} is a video; explain reads images (its frames: `affectkit clip-frames`)"
            continue
        try:
            yield file, read_image(file), "ok"
        except AffectkitError as error:
            yield file, None, f"error: {error}"


def explain_images(model_path: Path, inputs: Sequence[Path], out: Path | None = None, target: str = PREDICTED,
                   layer: str = "auto", detect: bool = True, detector_method: str = "auto",
                   face_margin: float | None = None, device: str = "cpu", method: str = "gradcam",
                   quiet: bool = False) -> ExplainResult:
    """Explain every face of the images and folders ``inputs``: ``target`` is the class the model predicts for it
    (``predicted``), a class by name, ``valence`` or ``arousal``; ``method`` "gradcam" (on the PyTorch model) or
    "occlusion" (on the model as ``predict`` runs it: its current ONNX export on the CPU, where it has one). Writes
    ``maps/<n>_<image>_face<k>.png`` per face, ``explanations.csv`` (one row per face; a row for an image without a
    face, or unreadable, says so) and ``explanations.png`` (the first faces) into ``out`` (default: ``explanations``
    beside the model)."""
    from affectkit.models.metadata import model_paths

    check_layer(layer, method)
    gradcam = method == "gradcam"
    if gradcam and Path(model_path).suffix == ".onnx":
        raise AffectkitError(f"{model_path}: Grad-CAM needs the PyTorch model (its .safetensors file); an ONNX export "
                             "is explained with --method occlusion.")
    with silenced(quiet):
        predictor = Predictor(model_path, backend="torch" if gradcam else "auto", device=device, detect=detect,
                              detector_method=detector_method, face_margin=face_margin)
        check_data_target(target, predictor.class_names, predictor.trained_classes,
                          predictor.predicts_valence_arousal, labelled=False)
        model = predictor.backend.model if gradcam else None
        out = Path(out) if out is not None else model_paths(model_path)[0].parent / "explanations"
        (out / "maps").mkdir(parents=True, exist_ok=True)
        if gradcam:
            layer = resolved_layer(model, predictor.input_size, layer)
        rows: list[dict] = []
        panels: list[tuple[np.ndarray, str]] = []
        for number, (file, image, status) in enumerate(_images_of(inputs), 1):
            explained = [] if image is None else explain_image(predictor, model, image, target, layer,
                                                               method=method)
            if not explained:
                rows.append({"source": str(file), "face": None, "status": "no face found" if image is not None
                             else status})
            for k, face in enumerate(explained):
                path = _write_png(out / "maps" / f"{number:04d}_{file.stem}_face{k}.png",
                                  _panel(face.crop, face.heatmap))
                result = face.result
                rows.append({"source": str(file), "face": k, "status": "ok", "box": result["box"],
                             "target": face.target, "expression": result["expression"],
                             "confidence": result["confidence"], "valence": result["valence"],
                             "arousal": result["arousal"], "upper_half_share": face.upper_half_share,
                             "peak_x": float(face.peak[0]), "peak_y": float(face.peak[1]),
                             "map": str(path.relative_to(out))})
                if len(panels) < FIGURE_FACES:
                    answer = result["expression"] or f"valence {result['valence']:+.2f}"
                    panels.append((overlay(face.crop, face.heatmap), f"{file.stem}\n{answer} (map: {face.target})"))
        table = pd.DataFrame(rows).astype({"face": "Int64"})
        paths = {"csv": out / "explanations.csv"}
        with atomic_path(paths["csv"]) as tmp:
            table.to_csv(tmp, index=False)
        # An error names its file already.
        notes = [row["status"].removeprefix("error: ") if row["status"].startswith("error: ")
                 else f"{row['source']}: {row['status']}" for row in rows if row["status"] != "ok"]
        if panels:
            paths["plot"] = plot_face_maps([p for p, _ in panels], [t for _, t in panels], out / "explanations.png",
                                           f"Where {predictor.meta['display_name']} looks ({MAP_METHODS[method]})")
    return ExplainResult(table, paths, notes)


def explain_data(model_path: Path, data: Path, split: str = "test", splits: Path | None = None,
                 out: Path | None = None, target: str = LABEL, layer: str = "auto", method: str = "gradcam",
                 per_class: int | None = None, quiet: bool = False) -> ExplainResult:
    """Explain the faces of ``split`` of ``data`` (as ``evaluate`` picks them): each face's map of ``target`` (its
    class as the data set gives it, ``label``; the class the model predicts, ``predicted``; a class by name;
    ``valence`` or ``arousal``), averaged by class as the data set gives it. Writes ``explanations.csv`` (per face),
    ``class_maps.csv`` and ``class_maps.png`` (per class: its mean face under its mean map) into ``out`` (default:
    ``explanations`` beside the model). ``method``: "gradcam" or "occlusion" (see :func:`explain_images`; on the
    PyTorch model here). ``per_class``: map at most this many faces of each class (the first in the split)."""
    from affectkit.models.metadata import model_paths
    from affectkit.pipeline.run import evaluation_data

    check_layer(layer, method)
    if per_class is not None and per_class < 1:
        raise AffectkitError(f"--per-class must be at least 1 (faces of each class to map), got {per_class}.")
    with silenced(quiet):
        prepared = evaluation_data(model_path, data, split, splits)
        out = Path(out) if out is not None else model_paths(model_path)[0].parent / "explanations"
        return explain_split(model_path, prepared, split, data, out, target, layer, per_class=per_class,
                             method=method)


def explain_split(model_path: Path, prepared: PreparedData, split: str, source: Path, out: Path,
                  target: str = LABEL, layer: str = "auto", prefix: str = "", per_class: int | None = None,
                  predicted: np.ndarray | None = None, method: str = "gradcam") -> ExplainResult:
    """:func:`explain_data` on ``split`` of data read already (``prepared``, from ``source``); the files are named
    ``prefix`` + ``explanations.csv``, ``class_maps.csv``, ``class_maps.png``. ``per_class``: map only the first
    faces of each class as the data gives it, this many at most (a class's mean map settles within tens).
    ``predicted``: the class the model gives each face of ``split``, where the caller has it (a run or a benchmark
    that scored the model there), instead of predicting them again."""
    from affectkit.evaluation.evaluator import evaluation_device
    from affectkit.inference.predictor import predicts_expression, predicts_valence_arousal, trained_classes
    from affectkit.inference.torch_backend import TorchBackend
    from affectkit.models.io import load_model
    from affectkit.models.metadata import config_from_metadata
    from affectkit.pipeline.run import saved_predictions

    check_layer(layer, method)
    device = evaluation_device()
    model, meta = load_model(model_path, device=device)
    classes = trained_classes(meta) if predicts_expression(meta) else []
    check_data_target(target, CLASS_NAMES if classes else [], classes, predicts_valence_arousal(meta),
                      labelled=True)
    if predicted is None:
        positions, predictions = saved_predictions(model_path, model, prepared, split, source)
        predicted = predictions.probs.argmax(1)
    else:
        positions = prepared.positions(split)
    labels = prepared.expression[positions]
    if not classes:
        predicted = np.full(len(positions), NO_EXPRESSION)
    if target == LABEL:
        labelled = labels != NO_EXPRESSION
        if not labelled.any():
            raise AffectkitError(f"--target label: no face of the {split} split of {source} has a class; explain "
                                 "--target predicted, or valence / arousal.")
        positions, labels, predicted = positions[labelled], labels[labelled], predicted[labelled]
    if per_class is not None:
        kept = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]))
        positions, labels, predicted = positions[kept], labels[kept], predicted[kept]
    size = int(meta["input_size"])
    mean, std = input_normalization(meta)
    tta_flip = config_from_metadata(meta).tta_flip
    if method == "gradcam":
        layer = resolved_layer(model, size, layer)
    else:  # what occlusion asks: the model as predict would answer
        served, temperature = TorchBackend(model, device), float(meta.get("temperature") or 1.0)
    aims = (None if target in VALENCE_AROUSAL else labels if target == LABEL else predicted
            if target == PREDICTED else np.full(len(positions), class_index(target, classes)))
    maps_sum: dict[int, np.ndarray] = {}
    faces_sum: dict[int, np.ndarray] = {}
    shares, peaks = np.empty(len(positions)), np.empty((len(positions), 2))
    reporter().show(f"Maps ({MAP_METHODS[method]}) of {meta['display_name']} on {len(positions)} faces of the {split} "
                    f"split of {source}")
    starts = range(0, len(positions), BATCH)
    for start in reporter().track(starts, total=len(starts), description="Explaining"):
        chunk = slice(start, start + BATCH)
        crops = np.asarray(prepared.images[positions[chunk]])  # cached at the model's input size
        batch, aim = preprocess(crops, size, mean, std), target if aims is None else aims[chunk]
        maps = (grad_cam(model, batch, aim, tta_flip=tta_flip, layer=layer) if method == "gradcam"
                else occlusion(served, batch, aim, tta_flip, temperature))
        shares[chunk], peaks[chunk] = upper_half_share(maps), map_peaks(maps)
        for crop, heatmap, label in zip(crops, maps, labels[chunk]):
            maps_sum[label] = maps_sum.get(label, 0) + heatmap
            faces_sum[label] = faces_sum.get(label, 0) + crop.astype(np.float64)
    per_face = pd.DataFrame({
        "id": [prepared.records[i].id for i in positions], "label": _names(labels), "predicted": _names(predicted),
        "target": target if aims is None else _names(aims), "upper_half_share": shares, "peak_x": peaks[:, 0],
        "peak_y": peaks[:, 1]})
    table = _class_table(per_face, labels, predicted)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"faces": out / f"{prefix}explanations.csv", "csv": out / f"{prefix}class_maps.csv"}
    for frame, path in ((per_face, paths["faces"]), (table, paths["csv"])):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    panels, titles = [], []
    for row in table.itertuples():
        group = NO_EXPRESSION if row.label == "no class" else CLASS_NAMES.index(row.label)
        # Stretched from its lowest to its highest: averaged over faces, a map varies by less than its level.
        low, high = float(maps_sum[group].min()), float(maps_sum[group].max())
        mean_map = (maps_sum[group] - low) / max(high - low, np.finfo(float).tiny)
        panels.append(overlay(np.round(faces_sum[group] / row.faces).astype(np.uint8), mean_map))
        titles.append(f"{row.label} ({row.faces})\n" + ("no evidence" if np.isnan(row.upper_half_share)
                                                         else f"upper half {row.upper_half_share:.0%}"))
    what = "each face's class" if target == LABEL else "the predicted class" if target == PREDICTED else target
    paths["plot"] = plot_face_maps(panels, titles, out / f"{prefix}class_maps.png", f"Where {meta['display_name']} "
                                   f"looks for {what} (mean {MAP_METHODS[method]} by class)")
    notes = []
    if target == LABEL and (untrained := [c for c in dict.fromkeys(per_face["label"]) if c not in classes]):
        notes.append(f"The model was not trained on {', '.join(untrained)}: it gives no evidence for "
                     f"{'it' if len(untrained) == 1 else 'them'}, and those maps are empty.")
    return ExplainResult(table, paths, notes)


def _names(classes: np.ndarray) -> list[str]:
    return [CLASS_NAMES[c] if c != NO_EXPRESSION else "" for c in classes]


def _class_table(faces: pd.DataFrame, labels: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Per class as the data set gives it (faces without one together, last): its faces, the model's accuracy on
    them (where it predicts classes and they have one), the mean share of their maps on the upper face, and how many
    maps are empty (nothing in the face raises the target)."""
    rows = []
    for group in [*sorted(set(labels) - {NO_EXPRESSION}), *([NO_EXPRESSION] if NO_EXPRESSION in labels else [])]:
        mine = labels == group
        scored = group != NO_EXPRESSION and (predicted != NO_EXPRESSION).all()
        rows.append({"label": CLASS_NAMES[group] if group != NO_EXPRESSION else "no class", "faces": int(mine.sum()),
                     "accuracy": float((predicted[mine] == group).mean()) if scored else np.nan,
                     "upper_half_share": float(faces.loc[mine, "upper_half_share"].mean()),
                     "empty_maps": int(faces.loc[mine, "upper_half_share"].isna().sum())})
    return pd.DataFrame(rows)
