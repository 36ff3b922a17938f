"""``affectkit explain``: where a saved model looks (Grad-CAM, occlusion or integrated-gradients maps,
:mod:`affectkit.inference.explain`).

On photos (``explain_images``): each face as the model is served it (found, aligned and cropped as ``predict`` does),
its map laid over it beside the plain crop, a table of what the model answered and how much of the map falls on the
upper face, and one figure of them all. On a data set (``explain_data``): the faces ``evaluate`` scores (the model's
test split by default), the mean face and mean map of each class, to see what each expression is read from (the
mouth for Happy, the eyes and brows for Surprise) and whether a class is read from something other than the face.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
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
    FaceExplanation,
    check_layer,
    check_target,
    class_index,
    explain_image,
    face_maps,
    image_heatmap,
    map_peaks,
    needs_network,
    overlay,
    png_bytes,
    resolved_layer,
    upper_half_share,
)
from affectkit.inference.predictor import Predictor, input_normalization, preprocess
from affectkit.progress import reporter, silenced

if TYPE_CHECKING:
    from affectkit.data.datamodule import PreparedData
    from affectkit.models.factory import AffectModel

PREDICTED, LABEL = "predicted", "label"  # targets: the class the model answers, the class the data set gives
PANEL_SIDE = 192  # a face and its map are shown at least this large
VIDEO_FPS = 1.0  # frames a second a video is explained at, unless every N-th frame is asked
FIGURE_FACES = 32  # explanations.png shows at most this many faces, spread over all those explained
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


def _image_of(file: Path) -> tuple[np.ndarray | None, str]:
    """The image ``file`` holds, or None and why it is not read (``error: ...``, naming the file)."""
    from affectkit.inference.images import read_image

    try:
        return read_image(file), "ok"
    except AffectkitError as error:
        return None, f"error: {error}"


class _ExplainedVideo:
    """A video's read frames, each face under its map, written as ``path`` (an MP4 at the rate the frames were read)
    once the last is in: a video cut short leaves none."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self._part = path.with_name(f".{path.stem}.part{path.suffix}")  # the container is chosen by the suffix
        self._writer: cv2.VideoWriter | None = None

    def add(self, frame: np.ndarray, heatmap: np.ndarray) -> None:
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self._part), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                           (frame.shape[1], frame.shape[0]))
        self._writer.write(cv2.cvtColor(overlay(frame, heatmap), cv2.COLOR_RGB2BGR))

    def close(self, complete: bool) -> Path | None:
        if self._writer is None:
            return None
        self._writer.release()
        if not complete:
            self._part.unlink(missing_ok=True)
            return None
        os.replace(self._part, self.path)
        return self.path


def _video_frames(file: Path, every: int | None) -> Iterator[tuple[int, float, float, np.ndarray]]:
    """(frame index, its time in seconds, the rate frames are read at, RGB frame) of every ``every``-th frame of the
    video ``file`` (None: about one a second); an unreadable video raises an error naming it."""
    from affectkit.inference.media import frame_rate_of, frame_step, video_frames

    capture = cv2.VideoCapture(str(file))
    try:
        if not capture.isOpened():
            raise AffectkitError(f"{file}: not a readable video")
        rate = frame_rate_of(capture)
        step = every or frame_step(rate, VIDEO_FPS)
        for index, frame in video_frames(capture, step):
            yield index, index / rate, rate / step, frame
    finally:
        capture.release()


class _Spread:
    """At most ``size`` items of a stream of unknown length, spread evenly over it: every ``stride``-th item is kept,
    and when more than ``size`` are, every other one is dropped and the stride doubled."""

    def __init__(self, size: int):
        self.size, self.stride, self.seen = size, 1, 0
        self.kept: list = []

    def offer(self, make: Callable[[], object]) -> None:
        """The next item of the stream, made (``make()``) only where it is kept."""
        if self.seen % self.stride == 0:
            self.kept.append(make())
            if len(self.kept) > self.size:
                self.kept, self.stride = self.kept[::2], self.stride * 2
        self.seen += 1


class _FaceMaps:
    """The faces of photos and videos explained so far: each face's map file in ``out/maps`` and row of
    ``explanations.csv`` (``rows``; a row also for an image or frame without a face and for a file unreadable), the
    panels of faces spread over them all for ``explanations.png`` and each video's explained video."""

    def __init__(self, predictor: Predictor, model: AffectModel | None, target: str, layer: str, method: str,
                 out: Path):
        self.predictor, self.model, self.target, self.layer, self.method, self.out = (
            predictor, model, target, layer, method, out)
        self.rows: list[dict] = []
        self.panels = _Spread(FIGURE_FACES)  # of (the face under its map, its title)
        self.videos: list[Path] = []
        self.faceless: list[str] = []  # videos without a face in any frame read (each frame's row says so)

    def photo(self, number: int, file: Path) -> None:
        image, status = _image_of(file)
        if image is None:
            self.rows.append({"source": str(file), "face": None, "status": status})
        else:
            self.image(number, file, image)

    def video(self, number: int, file: Path, every: int | None, advance: Callable[[], None]) -> None:
        """Every ``every``-th frame of the video ``file`` (None: about one a second), and the explained video."""
        written, complete, faces = None, False, 0
        try:
            for index, time, fps, frame in _video_frames(file, every):
                written = written or _ExplainedVideo(self.out / f"{number:04d}_{file.stem}_explained.mp4", fps)
                explained = self.image(number, file, frame, index, time)
                written.add(frame, image_heatmap(frame.shape[:2], explained, self.predictor.face_margin))
                faces += len(explained)
                advance()
            complete = True
        except AffectkitError as error:
            self.rows.append({"source": str(file), "face": None, "status": f"error: {error}"})
        finally:
            done = written.close(complete) if written is not None else None
        if done is not None:
            self.videos.append(done)
            if not faces:
                self.faceless.append(f"{file}: no face found in the frames read")
        elif complete:
            self.rows.append({"source": str(file), "face": None, "status": f"error: {file}: no frame could be decoded"})

    def image(self, number: int, file: Path, image: np.ndarray, frame: int | None = None,
              time: float | None = None) -> list[FaceExplanation]:
        """The faces of ``image`` (``file``'s, or its frame ``frame`` at ``time`` seconds), explained and kept."""
        explained = explain_image(self.predictor, self.model, image, self.target, self.layer, method=self.method)
        where = {"source": str(file), "frame": frame, "time": time}
        if not explained:
            self.rows.append({**where, "face": None, "status": "no face found"})
        name = f"{number:04d}_{file.stem}" + ("" if frame is None else f"_frame{frame:06d}")
        for k, face in enumerate(explained):
            path = _write_png(self.out / "maps" / f"{name}_face{k}.png", _panel(face.crop, face.heatmap))
            result = face.result
            self.rows.append({**where, "face": k, "status": "ok", "box": result["box"], "target": face.target,
                              "expression": result["expression"], "confidence": result["confidence"],
                              "valence": result["valence"], "arousal": result["arousal"],
                              "upper_half_share": face.upper_half_share, "peak_x": float(face.peak[0]),
                              "peak_y": float(face.peak[1]), "map": str(path.relative_to(self.out))})
            answer = result["expression"] or f"valence {result['valence']:+.2f}"
            title = f"{file.stem}{'' if time is None else f' {time:.1f} s'}\n{answer} (map: {face.target})"
            self.panels.offer(lambda: (overlay(face.crop, face.heatmap), title))
        return explained


def explain_images(model_path: Path, inputs: Sequence[Path], out: Path | None = None, target: str = PREDICTED,
                   layer: str = "auto", detect: bool = True, detector_method: str = "auto",
                   face_margin: float | None = None, device: str = "cpu", method: str = "gradcam",
                   every: int | None = None, quiet: bool = False) -> ExplainResult:
    """Explain every face of the images, videos and folders ``inputs``: ``target`` is the class the model predicts
    for it (``predicted``), a class by name, ``valence`` or ``arousal``; ``method`` "gradcam" or "ig" (integrated
    gradients; both on the PyTorch model) or "occlusion" (on the model as ``predict`` runs it: its current ONNX
    export on the CPU, where it has one). A video is read every ``every``-th frame (None: about one frame a second).
    Writes ``maps/<n>_<image>_face<k>.png`` (a video's: ``maps/<n>_<video>_frame<i>_face<k>.png``) per face,
    ``explanations.csv`` (one row per face; a row for an image or a frame without a face, or a file unreadable, says
    so), ``<n>_<video>_explained.mp4`` per video (its frames read, each face under its map) and
    ``explanations.png`` (at most ``FIGURE_FACES`` faces, spread over all of them) into ``out`` (default:
    ``explanations`` beside the model)."""
    from affectkit.inference.media import expand_inputs, frames_to_read, is_video
    from affectkit.models.metadata import is_export, model_paths

    check_layer(layer, method)
    if every is not None and every < 1:
        raise AffectkitError(f"--every must be at least 1 (explain every N-th frame of a video), got {every}.")
    differentiated = needs_network(method)
    if differentiated and is_export(model_path):
        raise AffectkitError(f"{model_path}: {MAP_METHODS[method]} needs the PyTorch model (its .safetensors file); "
                             "an ONNX export is explained with --method occlusion.")
    with silenced(quiet):
        files = expand_inputs(list(inputs))
        if not files:
            raise AffectkitError("No images or videos to explain: the inputs are empty (or folders without either).")
        predictor = Predictor(model_path, backend="torch" if differentiated else "auto", device=device, detect=detect,
                              detector_method=detector_method, face_margin=face_margin)
        check_data_target(target, predictor.class_names, predictor.trained_classes,
                          predictor.predicts_valence_arousal, labelled=False)
        model = predictor.backend.model if differentiated else None
        out = Path(out) if out is not None else model_paths(model_path)[0].parent / "explanations"
        (out / "maps").mkdir(parents=True, exist_ok=True)
        if method == "gradcam":
            layer = resolved_layer(model, predictor.input_size, layer)
        maps = _FaceMaps(predictor, model, target, layer, method, out)
        total = sum(frames_to_read(file, every, VIDEO_FPS) if is_video(file) else 1 for file in files)
        with reporter().bar() as bar:
            task = bar.add_task("Explaining", total=total, info="")
            for number, file in enumerate(files, 1):
                if is_video(file):
                    maps.video(number, file, every, lambda: bar.advance(task))
                else:
                    maps.photo(number, file)
                    bar.advance(task)
        rows, panels = maps.rows, maps.panels.kept
        table = pd.DataFrame(rows, columns=list(dict.fromkeys(["source", "frame", "time", "face", "status",
                                                               *(k for row in rows for k in row)])))
        table = table.astype({"face": "Int64", "frame": "Int64"})
        if table["frame"].isna().all():  # photos only: no frame or time to tell
            table = table.drop(columns=["frame", "time"])
        paths = {"csv": out / "explanations.csv"}
        with atomic_path(paths["csv"]) as tmp:
            table.to_csv(tmp, index=False)
        paths.update({f"video {i}": video for i, video in enumerate(maps.videos, 1)})
        # An error names its file already.
        notes = [row["status"].removeprefix("error: ") if row["status"].startswith("error: ")
                 else f"{row['source']}: {row['status']}" for row in rows
                 if row["status"] != "ok" and row.get("frame") is None] + maps.faceless
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
    ``explanations`` beside the model). ``method``: "gradcam", "occlusion" or "ig" (see :func:`explain_images`; on
    the PyTorch model here). ``per_class``: map at most this many faces of each class (the first in the split)."""
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
    # What occlusion asks: the model as predict would answer.
    served = TorchBackend(model, device) if not needs_network(method) else None
    temperature = float(meta.get("temperature") or 1.0)
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
        maps = face_maps(method, batch, aim, model, served, tta_flip, temperature, layer)
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
