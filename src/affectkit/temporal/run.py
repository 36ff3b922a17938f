"""``affectkit temporal``: read labelled clips, run the face model on their frames, compare the face model as it is
(its mean over the frames), a model of the clip's frame statistics and the learned temporal model, keep for each
target the one best on validation; and predict with a kept model on new clips."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from affectkit.atomic import atomic_path, atomic_write_text
from affectkit.config import CLASS_NAMES
from affectkit.data.records import quarantine_frame
from affectkit.errors import AffectkitError
from affectkit.evaluation.comparison import INTERVAL_NOTE, interval_cells, markdown_table
from affectkit.evaluation.plots import plot_benchmark
from affectkit.inference.predictor import Predictor
from affectkit.models.metadata import sha256_of
from affectkit.models.registry import kept_description, verified_file
from affectkit.multimodal.face import DEFAULT_FRAME_RATE, FrameOutputs, frame_outputs, summarise
from affectkit.multimodal.features import FeatureTable, assign_splits, modality_columns
from affectkit.multimodal.fusion import (
    DIMENSIONS,
    FACE_AS_IS,
    better,
    expression_columns,
    face_model_limits,
    fuse,
    held_out_scores,
    labelled,
    predict,
    targets_of,
    truth_columns,
    validation_score,
)
from affectkit.multimodal.manifest import MultimodalManifest, Sample
from affectkit.multimodal.run import SCORES, check_run_options, face_model_digest, load_trusted, require_face_model
from affectkit.progress import reporter
from affectkit.temporal.clips import clip_digest, clips_signature, read_clips
from affectkit.temporal.model import HIDDEN_SIZES, SequenceNet, fit_sequence_model, predict_sequences
from affectkit.temporal.sequences import (
    ClipFrames,
    padded,
    read_frames,
    remove_parts,
    store_frames,
    stored_frames,
)

DEFAULT_FPS = 4.0
STATISTICS = "frame statistics"
SEQUENCE = "temporal model (GRU)"
ENSEMBLE = "frame statistics + temporal model"
META_FILE = "temporal_model.json"
GRU_FILE = "temporal_gru.safetensors"
STATISTICS_FILE = "temporal_statistics.skops"
SPLITS_FILE = "splits.csv"  # each clip's split in the fit, by its file: what temporal-predict marks as seen
HONEST_SELECTION = ("Each model is fit on the train clips; the frame-statistics model's regularisation and the "
                    "temporal model's size and epoch are chosen on the validation clips, and so is the model kept for "
                    "each target (log-loss for the expression, CCC for valence and arousal). The test clips score "
                    "every model once, here.")


@dataclass(frozen=True)
class Kept:
    method: str
    val_score: float


@dataclass(frozen=True)
class TemporalRun:
    out: Path
    table: pd.DataFrame  # one row per model: test scores, validation scores, the targets it is kept for
    kept: dict[str, Kept]  # target -> the model kept for it
    notes: list[str]

    @property
    def files(self) -> dict[str, Path]:
        names = ("temporal.csv", "temporal.md", "temporal.png", "frames.npz", "quarantine.csv", SPLITS_FILE, META_FILE,
                 GRU_FILE, STATISTICS_FILE)
        return {name: self.out / name for name in names if (self.out / name).is_file()}


def _labels(frames: ClipFrames, splits: pd.Series | None) -> pd.DataFrame:
    samples = frames.samples
    return pd.DataFrame({
        "id": [s.id for s in samples],
        "split": None if splits is None else splits.to_numpy(),
        "group": [s.group for s in samples],
        "expression": [np.nan if s.expression is None else s.expression for s in samples],
        "valence": [s.valence for s in samples],
        "arousal": [s.arousal for s in samples],
    })


def statistics_table(frames: ClipFrames, class_names: list[str], splits: pd.Series | None = None) -> FeatureTable:
    """One row per clip: its labels, split and the face's summary over its frames (means, movement, peaks)."""
    summary = pd.DataFrame([summarise(o, class_names) for o in frames.outputs], index=range(len(frames.outputs)))
    frame = pd.concat([_labels(frames, splits), summary], axis=1)
    return FeatureTable(frame, modality_columns(frame.columns, ["face"]))


def _sequence_targets(frame: pd.DataFrame, targets: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(expression ids with -1 where unlabelled, [N, 2] valence/arousal with NaN where unlabelled), for ``targets``."""
    expression = frame["expression"].fillna(-1).to_numpy(dtype=np.int64)
    if "expression" not in targets:
        expression[:] = -1
    dimensions = frame[list(DIMENSIONS)].to_numpy(dtype=np.float32).copy()
    for i, name in enumerate(DIMENSIONS):
        if name not in targets:
            dimensions[:, i] = np.nan
    return expression, dimensions


def _sequence_prediction(target: str, probabilities: np.ndarray, dimensions: np.ndarray) -> np.ndarray:
    return probabilities if target == "expression" else dimensions[:, DIMENSIONS.index(target)]


def _fit_temporal(table: FeatureTable, frames: ClipFrames, targets: list[str], seed: int, progress) -> tuple[
        SequenceNet, dict[str, Any], np.ndarray, np.ndarray]:
    """The GRU fit on train, chosen on val; its kept hidden size and epoch, and its outputs for every clip."""
    inputs, lengths = padded(frames.outputs)
    expression, dimensions = _sequence_targets(table.frame, targets)
    part = {s: (table.frame["split"] == s).to_numpy() for s in ("train", "val")}
    train, val = ((inputs[m], lengths[m], expression[m], dimensions[m]) for m in (part["train"], part["val"]))
    fitted = fit_sequence_model(train, val, seed, progress)
    probabilities, predicted = predict_sequences(fitted.net, inputs, lengths)
    return fitted.net, {"hidden": fitted.hidden, "epoch": fitted.epoch, "n_features": int(inputs.shape[2])}, \
        probabilities, predicted


@dataclass
class Compared:
    table: pd.DataFrame  # one row per model: test scores, validation scores, the targets it is kept for
    kept: dict[str, Kept]
    statistics_models: dict[str, Any]  # target -> the frame-statistics model, where the kept model uses it
    net: SequenceNet
    gru: dict[str, Any]  # the GRU's kept size and epoch, its input width


def _compare(table: FeatureTable, frames: ClipFrames, seed: int) -> Compared:
    """Every model fit for every target the clips label; the one kept for each target is the best on val."""
    targets = targets_of(table)
    if not targets:
        raise AffectkitError("the train and val clips share no labelled target")
    with reporter().bar() as bar:
        task = bar.add_task("Fitting models", total=len(targets) + len(HIDDEN_SIZES), info="")
        fused = fuse(table, seed, progress=lambda: bar.advance(task))
        net, gru, probabilities, dimensions = _fit_temporal(table, frames, targets, seed, lambda: bar.advance(task))
    rows = fused.table.drop(columns=["kept_for", *(c for c in fused.table if c.startswith("val_"))])
    rows = {r["method"]: r for r in rows.replace({"method": {"face": STATISTICS}}).to_dict("records")}
    frame = table.frame
    kept: dict[str, Kept] = {}
    for target in targets:
        predicted = {STATISTICS: predict(fused.kept[target].model, target, frame),
                     SEQUENCE: _sequence_prediction(target, probabilities, dimensions)}
        predicted[ENSEMBLE] = (predicted[STATISTICS] + predicted[SEQUENCE]) / 2
        index = {s: labelled(frame[frame["split"] == s], target).index.to_numpy() for s in ("val", "test")}
        truth = {s: frame.loc[i, target].to_numpy() for s, i in index.items()}
        people = frame.loc[index["test"], "group"].to_numpy()
        for method, values in predicted.items():
            row = rows.setdefault(method, {"method": method, "modalities": "face"})
            score = validation_score(target, values[index["val"]], truth["val"])
            row.update(held_out_scores(target, values[index["test"]], truth["test"], people))
            row["val_log_loss" if target == "expression" else f"val_{target}_ccc"] = score
            if better(target, score, kept[target].val_score if target in kept else None):
                kept[target] = Kept(method, score)
    table_out = pd.DataFrame(list(rows.values()))
    table_out["kept_for"] = [", ".join(t for t in targets if kept[t].method == m) for m in table_out["method"]]
    statistics_models = {t: f.model for t, f in fused.kept.items() if kept[t].method in (STATISTICS, ENSEMBLE)}
    return Compared(table_out, kept, statistics_models, net, gru)


def _notes(frames: ClipFrames, manifest_rejected: int, table: FeatureTable, gru: dict[str, Any]) -> list[str]:
    lengths = [len(o.times) for o in frames.outputs]
    notes = [f"{len(frames.samples)} clips read, {int(np.median(lengths))} frames with a face in the median clip "
             f"({min(lengths)}-{max(lengths)})"]
    rejected = manifest_rejected + len(frames.rejected)
    if rejected:
        notes.append(f"{rejected} clip(s) quarantined (see quarantine.csv)")
    splits = table.frame["split"].value_counts()
    given = {s.split for s in frames.samples}
    how = "stratified" if None in given else "as given"
    if None not in given and "val" not in given:
        how = f"{'/'.join(sorted(given, reverse=True))} as given, val carved from train"
    if table.frame["group"].notna().any():
        how += ", no subject on two sides"
    notes.append("split " + " / ".join(f"{s} {int(splits.get(s, 0))}" for s in ("train", "val", "test"))
                 + f" ({how})")
    inputs = "outputs and embedding" if frames.outputs[0].embeddings is not None else "outputs"
    notes.append(f"temporal model: GRU of {gru['hidden']} units each way over the face model's {inputs} "
                 f"({gru['n_features']} numbers a frame), epoch {gru['epoch']} kept")
    return notes


def _report(out: Path, table: pd.DataFrame, kept: dict[str, Kept], source: Path, notes: list[str]) -> None:
    with atomic_path(out / "temporal.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    shown = [c for c in ("method", *SCORES, "kept_for") if c in table]
    lines = [f"# Temporal models: {source.name}", "", *[f"- {note}" for note in notes],
             "- kept: " + "; ".join(f"{target}: {k.method}" for target, k in kept.items()), "", "## Test clips", "",
             markdown_table(interval_cells(table[shown], table)), "", INTERVAL_NOTE, "",
             "## Validation scores (what chose)", "",
             markdown_table(table[["method", *(c for c in table if c.startswith("val_"))]]), "",
             "## How the rows were made", "",
             f"- {FACE_AS_IS}: the face model's probabilities, valence and arousal averaged over the clip's frames. "
             f"{STATISTICS}: logistic (expression) and ridge (valence, arousal) regression on the clip's summary: "
             "those means, the spread and trend of valence and arousal, each class's peak probability. "
             f"{SEQUENCE}: a bidirectional GRU over the frames (the face model's log-probabilities, valence, arousal "
             "and time of each), an attention pooling that weighs the frames, and heads for the expression and for "
             f"valence and arousal. {ENSEMBLE}: the mean of the two models' probabilities (and values).",
             f"- {HONEST_SELECTION}", "", "![scores](temporal.png)", ""]
    atomic_write_text(out / "temporal.md", "\n".join(lines))
    plot_benchmark(table.rename(columns={"method": "model"}), out / "temporal.png",
                   title="Temporal models on the test clips", columns=SCORES)


def _save(out: Path, compared: Compared, face_model: Path, settings: dict[str, Any]) -> None:
    import safetensors.torch
    import skops.io

    kept = compared.kept
    meta: dict[str, Any] = {"format": "affectkit temporal model 1", "kept": {t: vars(k) for t, k in kept.items()},
                            "class_names": list(CLASS_NAMES), "face_model": str(face_model.resolve()),
                            "face_model_sha256": face_model_digest(face_model), **settings}
    for stale in (GRU_FILE, STATISTICS_FILE):
        (out / stale).unlink(missing_ok=True)
    if any(k.method in (SEQUENCE, ENSEMBLE) for k in kept.values()):
        with atomic_path(out / GRU_FILE) as tmp:
            safetensors.torch.save_file({k: v.contiguous() for k, v in compared.net.state_dict().items()}, str(tmp))
        meta["gru"] = {**compared.gru, "sha256": sha256_of(out / GRU_FILE)}
    if compared.statistics_models:
        with atomic_path(out / STATISTICS_FILE) as tmp:
            skops.io.dump(compared.statistics_models, tmp)
        meta["statistics"] = {"sha256": sha256_of(out / STATISTICS_FILE)}
    atomic_write_text(out / META_FILE, json.dumps(meta, indent=2))


def _predictor(face_model: Path, backend: str, detect: bool, embeddings: bool) -> Predictor:
    """The face model; the PyTorch one where embeddings are read (an ONNX graph has no embedding output)."""
    if embeddings and backend == "onnx":
        raise AffectkitError("--embeddings reads the face model's backbone features: use --backend torch or auto.")
    return Predictor(face_model, backend="torch" if embeddings else backend, detect=detect)


def _frames(manifest: MultimodalManifest, predictor: Predictor, out: Path, key: dict[str, Any], fps: float,
            embeddings: bool, frame_rate: float) -> ClipFrames:
    path = out / "frames.npz"
    frames = stored_frames(path, key, manifest)
    if frames is not None:
        reporter().note(f"Frames of the same clips and face model read back from {path}")
        return frames
    frames = read_frames(manifest, predictor, fps, embeddings, frame_rate=frame_rate, checkpoint=path, key=key)
    if not frames.samples:
        raise AffectkitError(f"{manifest.path}: no clip could be read (first: {frames.rejected[0].reason}).")
    store_frames(path, key, frames)
    remove_parts(path)
    return frames


def run_temporal(clips: str | Path, out: str | Path, face_model: str | Path, seed: int = 0, val_fraction: float = 0.15,
                 test_fraction: float = 0.15, fps: float = DEFAULT_FPS, detect: bool = True,
                 backend: str = "auto", embeddings: bool = False, frame_rate: float = DEFAULT_FRAME_RATE,
                 fold: int = 1, class_map: dict[str, str] | None = None) -> TemporalRun:
    """The face model on every clip's frames (stored in ``out`` and reused by a rerun with the same inputs), the
    models compared on one split, the report written, the model kept on validation saved. ``embeddings``: the
    temporal model also reads the face model's embedding of each face (its pooled backbone features; PyTorch
    backend), which a large clip set can learn more from than from the face model's outputs alone. ``frame_rate``:
    frames a second of clips given as folders of frames; ``fold``: which of DFEW's five splits; ``class_map``: class
    folder name -> class name (or "ignore") for folders not named after an expression."""
    check_run_options(val_fraction, test_fraction, fps, frame_rate)
    out, face_model = Path(out), Path(face_model)
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_clips(clips, fold=fold, class_map=class_map)
    predictor = _predictor(face_model, backend, detect, embeddings)
    key = {"clips": clips_signature(manifest), "face_model_sha256": face_model_digest(face_model), "fps": fps,
           "detect": detect, "embeddings": embeddings, "frame_rate": frame_rate}
    frames = _frames(manifest, predictor, out, key, fps, embeddings, frame_rate)
    with atomic_path(out / "quarantine.csv") as tmp:
        quarantine_frame(manifest.rejected + frames.rejected).to_csv(tmp, index=False)
    splits = assign_splits(frames.samples, val_fraction, test_fraction, seed)["split"]
    table = statistics_table(frames, predictor.class_names, splits)
    if table.part("train").empty or table.part("val").empty:
        raise AffectkitError(f"{manifest.path}: the split left no clip in train or val; give more clips or a split.")
    try:
        compared = _compare(table, frames, seed)
    except (AffectkitError, ValueError) as exc:
        raise AffectkitError(f"{manifest.path}: {exc}.") from None
    notes = _notes(frames, len(manifest.rejected), table, compared.gru)
    if predictor.warning:
        notes.append(f"face model: {face_model} ({predictor.warning})")
    notes += face_model_limits(predictor.class_names, predictor.predicts_valence_arousal)
    _report(out, compared.table, compared.kept, manifest.path, notes)
    _save(out, compared, face_model, {"fps": fps, "detect": detect, "embeddings": embeddings,
                                      "frame_rate": frame_rate})
    clips = [s.files["face"] for s in frames.samples]
    write_fit_splits(out / SPLITS_FILE, clips, splits.to_numpy(), ids=[s.id for s in frames.samples],
                     digests=[clip_digest(clip) for clip in clips])
    return TemporalRun(out, compared.table, compared.kept, notes)


# -- predicting with a kept model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemporalModel:
    """A kept temporal model, loaded: what it read (``meta``: fps, detection, frame rate, the face model's digest),
    its GRU where kept, its frame-statistics models by target."""

    meta: dict[str, Any]
    net: SequenceNet | None
    statistics: dict[str, Any]

    @property
    def embeddings(self) -> bool:
        return bool(self.meta.get("embeddings", False))

    @property
    def frame_rate(self) -> float:
        return self.meta.get("frame_rate", DEFAULT_FRAME_RATE)  # models saved before frame folders were read

    def check_face_model(self, face_model: Path, remedy: str = "give that model with --face-model") -> None:
        require_face_model(self.meta["face_model_sha256"], face_model, "The temporal model", remedy)

    def read(self, predictor: Predictor, path: Path) -> FrameOutputs | None:
        """The face model's outputs on one clip's frames, read as the model's training clips were; None when no frame
        shows a face."""
        return frame_outputs(predictor, path, None, None, self.meta["fps"], self.embeddings, self.frame_rate)

    def predict(self, outputs: list[FrameOutputs], class_names: list[str]) -> pd.DataFrame:
        """One row per clip: the kept models' expression and its probabilities, valence and arousal."""
        frames = ClipFrames([Sample(str(i), {}) for i in range(len(outputs))], outputs, [])
        summary = statistics_table(frames, class_names).frame
        if self.net is not None:
            probabilities, dimensions = predict_sequences(self.net, *padded(outputs))
        out = pd.DataFrame(index=range(len(outputs)))
        for target, kept in self.meta["kept"].items():
            parts = []
            if kept["method"] in (SEQUENCE, ENSEMBLE):
                parts.append(_sequence_prediction(target, probabilities, dimensions))
            if kept["method"] in (STATISTICS, ENSEMBLE):
                parts.append(predict(self.statistics[target], target, summary))
            predicted = np.mean(parts, axis=0)
            if target == "expression":
                out = out.assign(**expression_columns(predicted))
            else:
                out[target] = np.clip(predicted, -1.0, 1.0)
        return out


def load_temporal(model_dir: str | Path) -> TemporalModel:
    """The kept temporal model of ``model_dir``, each file checked against the digest recorded beside it."""
    import safetensors.torch

    model_dir = Path(model_dir)
    meta = kept_description(model_dir / META_FILE, "affectkit temporal")
    net, statistics = None, {}
    if "gru" in meta:
        path = verified_file(model_dir / GRU_FILE, meta["gru"]["sha256"], META_FILE, "affectkit temporal")
        net = SequenceNet(meta["gru"]["n_features"], meta["gru"]["hidden"])
        net.load_state_dict(safetensors.torch.load_file(str(path)))
    if "statistics" in meta:
        path = verified_file(model_dir / STATISTICS_FILE, meta["statistics"]["sha256"], META_FILE,
                             "affectkit temporal")
        statistics = load_trusted(path)
    return TemporalModel(meta, net, statistics)


@dataclass(frozen=True)
class ClipsRead:
    """New clips read for a kept temporal model: the model, the face model's classes, the clips' frame outputs
    (those with a face) and the reasons of the clips that could not be read."""

    model: TemporalModel
    class_names: list[str]
    frames: ClipFrames
    problems: list[str]
    fit_splits: list[str] | None = None  # where clips the model was fit on are read: each clip's split then ("")


def read_for_prediction(model_dir: str | Path, clips: str | Path, face_model: str | Path | None = None,
                        backend: str = "auto", fold: int = 1, checkpoint: Path | None = None,
                        description: str = "Predicting") -> ClipsRead:
    """The kept model of ``model_dir`` and the face model's outputs on the frames of ``clips`` (labels not needed),
    read as the model's training clips were (frames a second, face detection, frame rate of frame folders).
    ``checkpoint``: where the clips read so far are stored while reading (:func:`read_frames`' parts), so that the
    same call, stopped on the way, goes on from them; the caller deletes them (:func:`remove_parts`) once it has its
    answers, so that a failure after hours of reading does not throw the reading away."""
    model = load_temporal(model_dir)
    face_model = Path(face_model or model.meta["face_model"])
    model.check_face_model(face_model)
    manifest = read_clips(clips, require_labels=False, fold=fold)
    predictor = _predictor(face_model, backend, model.meta["detect"], model.embeddings)
    key = {"clips": clips_signature(manifest), "face_model_sha256": face_model_digest(face_model),
           "fps": model.meta["fps"], "detect": model.meta["detect"], "embeddings": model.embeddings,
           "frame_rate": model.frame_rate}
    frames = read_frames(manifest, predictor, model.meta["fps"], model.embeddings, description=description,
                         frame_rate=model.frame_rate, checkpoint=checkpoint, key=key)
    table, files = Path(model_dir) / SPLITS_FILE, [s.files["face"] for s in frames.samples]
    # By file, or for a copy of the clips by their digest (taken only where the model has its splits to match).
    fit = fit_splits(table, files, [clip_digest(clip) for clip in files] if table.is_file() else None)
    return ClipsRead(model, list(predictor.class_names), frames,
                     [r.reason for r in manifest.rejected + frames.rejected], fit)


def write_fit_splits(table: Path, files: Sequence[Path], splits: Sequence[str],
                     ids: Sequence[str] | None = None, digests: Sequence[str] | None = None) -> None:
    """Each file's split in a kept model's fit (and its sample's id, its content digest, where given) to ``table``,
    read back by :func:`fit_splits`. Written after the model, so that it never sits beside an older model it does not
    describe."""
    columns = {} if ids is None else {"id": list(ids)}
    columns |= {"path": [str(file.resolve()) for file in files], "split": list(splits)}
    if digests is not None:
        columns["digest"] = list(digests)
    with atomic_path(table) as tmp:
        pd.DataFrame(columns).to_csv(tmp, index=False)


def fit_splits(table: Path, files: list[Path], digests: Sequence[str] | None = None) -> list[str] | None:
    """Each file's split when a kept model was fit (blank for a file it never read), by the ``path`` and ``split``
    columns of ``table``, or, for a file read elsewhere (a copy of the data), by its content digest (``digests``,
    one per file, blank where unknown) where the table has them; None where none of ``files`` fit it (or the model
    was saved before its splits were)."""
    if not table.is_file():
        return None
    fit = pd.read_csv(table, dtype=str, keep_default_na=False)
    by_path = fit.set_index("path")["split"]
    by_digest = pd.Series(dtype=str)
    if digests is not None and "digest" in fit:
        by_digest = fit[fit["digest"] != ""].drop_duplicates("digest").set_index("digest")["split"]
    found = [by_path.get(str(file.resolve())) or by_digest.get(digest, "")
             for file, digest in zip(files, digests or [""] * len(files))]
    return found if any(found) else None


def predict_temporal(model_dir: str | Path, clips: str | Path, face_model: str | Path | None = None,
                     backend: str = "auto", fold: int = 1, checkpoint: Path | None = None
                     ) -> tuple[pd.DataFrame, list[str]]:
    """One row per readable clip (labels not needed): the kept models' expression, its probabilities, valence and
    arousal; and the reasons of the clips that could not be read (see :func:`read_for_prediction`)."""
    read = read_for_prediction(model_dir, clips, face_model, backend, fold, checkpoint)
    predictions = clip_predictions(read)
    if checkpoint is not None:
        remove_parts(checkpoint)
    return predictions, read.problems


def clip_predictions(read: ClipsRead) -> pd.DataFrame:
    """One row per clip read: its id, the kept models' expression, its probabilities, valence and arousal, and the
    labels the clips carry (:func:`~affectkit.multimodal.fusion.truth_columns`)."""
    ids = pd.DataFrame({"id": [s.id for s in read.frames.samples]})
    if not read.frames.samples:
        return ids
    fit = {} if read.fit_splits is None else {"fit_split": read.fit_splits}
    return pd.concat([ids, read.model.predict(read.frames.outputs, read.class_names),
                      pd.DataFrame(truth_columns(read.frames.samples) | fit)], axis=1)
