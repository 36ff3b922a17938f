"""Valence and arousal frame by frame, over clips annotated frame by frame (AFEW-VA, Aff-Wild2's VA challenge).

Three ways to give every frame its valence and arousal are compared: the face model's own per-frame outputs; the
same, smoothed over each clip by a centred moving average whose width is chosen on the validation clips (continuous
ratings change slowly, per-frame predictions jitter); and a learned sequence model, a bidirectional GRU over the
clip's per-frame outputs that gives each frame its valence and arousal. For each dimension the one with the best CCC
over the validation frames is kept; the test frames score every method once. The face model reads the data set's
own face crops (AFEW-VA's landmark crops, Aff-Wild2's aligned faces) at its input size, with its temperature and
test-time flip, on the face model's own split where its run folder holds one for this data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter1d
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.data import DataLoader, Dataset

from affectkit.atomic import atomic_path, atomic_write_text
from affectkit.data.datamodule import PreparedData, prepare_data
from affectkit.data.layouts import choose
from affectkit.data.records import ReadOptions, Reject, frame_files, natural_name_key
from affectkit.errors import AffectkitError
from affectkit.evaluation.comparison import markdown_table
from affectkit.evaluation.evaluator import predict_split
from affectkit.evaluation.plots import plot_benchmark
from affectkit.inference.predictor import Predictor
from affectkit.models.io import load_model
from affectkit.models.metadata import config_from_metadata, predicts_valence_arousal, read_metadata, sha256_of
from affectkit.models.registry import kept_description, verified_file
from affectkit.multimodal.face import DEFAULT_FRAME_RATE, FrameOutputs, frame_outputs
from affectkit.multimodal.fusion import ccc
from affectkit.multimodal.manifest import Sample
from affectkit.multimodal.run import face_model_digest, require_face_model
from affectkit.progress import reporter
from affectkit.readlog import ReadLog
from affectkit.runs import model_splits
from affectkit.temporal.clips import clips_signature, read_clips
from affectkit.temporal.model import HIDDEN_SIZES, fit_keeping_best, set_standardisation
from affectkit.temporal.run import fit_splits, write_fit_splits
from affectkit.temporal.sequences import output_columns

FRAME_LAYOUTS = ("afew_va", "affwild2")
DIMENSIONS = ("valence", "arousal")
AS_IS = "face model as is"
SMOOTHED = "smoothed over the clip"
SEQUENCE = "temporal model (GRU)"
WINDOWS = (1, 3, 5, 9, 15, 25, 41)  # frames of the centred moving average; 1 is the face model as is
CHUNK = 64  # frames of the train clips' pieces the GRU learns on
MAX_EPOCHS, PATIENCE, BATCH_SIZE = 200, 20, 16
META_FILE, GRU_FILE = "continuous_model.json", "continuous_gru.safetensors"
FRAME_SPLITS_FILE = "frame_splits.csv"  # each frame's split in the fit, by its file: what the predictions mark seen
FRAME_COLUMNS = ["clip", "frame_file", "time", "valence", "arousal"]
SCORES = {"valence_ccc": "Valence CCC", "arousal_ccc": "Arousal CCC"}


@dataclass(frozen=True)
class Clip:
    id: str
    positions: np.ndarray  # rows of the prepared data, in frame order
    split: str


def frame_clips(data: PreparedData) -> list[Clip]:
    """The clips of a data set whose faces are frames (record ids ``<clip>/<frame file>``), frames in natural
    order of their file names; a clip's frames share one split (the splits keep each actor or video together)."""
    by_clip: dict[str, list[int]] = {}
    for i, record in enumerate(data.records):
        by_clip.setdefault(record.id.rpartition("/")[0], []).append(i)
    splits = data.splits["split"].to_numpy()
    clips = []
    for clip, rows in sorted(by_clip.items(), key=lambda item: natural_name_key(item[0])):
        rows.sort(key=lambda i: natural_name_key(data.records[i].id.rpartition("/")[2]))
        parts = set(splits[rows])
        if len(parts) != 1:
            raise AffectkitError(f"clip {clip} has frames in {' and '.join(sorted(parts))}: its frames must share a "
                                 "split (give a splits.csv that groups each clip).")
        clips.append(Clip(clip, np.asarray(rows), parts.pop()))
    return clips


def frame_features(probabilities: np.ndarray, valence_arousal: np.ndarray) -> np.ndarray:
    """[T, classes + 2] per frame: the face model's log-probabilities ([T, 0] from a valence/arousal model), valence
    and arousal."""
    return np.column_stack(output_columns(probabilities, valence_arousal[:, 0], valence_arousal[:, 1])
                           ).astype(np.float32)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """A centred moving average of ``window`` frames over one clip's [T, ...] values (edges repeat)."""
    return values if window <= 1 else uniform_filter1d(values, size=window, axis=0, mode="nearest")


# -- the sequence model -----------------------------------------------------------------------------------------------


class FrameSequenceNet(nn.Module):
    """A bidirectional GRU over a clip's frame features, giving every frame its valence and arousal."""

    def __init__(self, n_features: int, hidden: int = 32):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))  # standardisation, set from the train frames
        self.register_buffer("std", torch.ones(n_features))
        self.gru = nn.GRU(n_features, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[N, T, 2] valence and arousal of [N, T, F] padded clips."""
        x = (x - self.mean) / self.std
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=x.shape[1])
        return torch.tanh(self.out(states))


class _Sequences(Dataset):
    def __init__(self, inputs: list[np.ndarray], targets: list[np.ndarray]):
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.inputs[i], self.targets[i]


def _pad(batch: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs [N, T, F] zero-padded, lengths [N], targets [N, T, 2] NaN-padded)."""
    lengths = torch.tensor([len(x) for x, _ in batch])
    inputs = torch.zeros(len(batch), int(lengths.max()), batch[0][0].shape[1])
    targets = torch.full((len(batch), int(lengths.max()), 2), math.nan)
    for i, (x, y) in enumerate(batch):
        inputs[i, : len(x)], targets[i, : len(y)] = torch.from_numpy(x), torch.from_numpy(y)
    return inputs, lengths, targets


class _FrameModule(L.LightningModule):
    """The GRU and its loss: squared error over the frames with valence/arousal (padding and gaps left out)."""

    def __init__(self, net: FrameSequenceNet, learning_rate: float = 3e-3, weight_decay: float = 1e-2):
        super().__init__()
        self.net, self.learning_rate, self.weight_decay = net, learning_rate, weight_decay

    def _loss(self, batch) -> torch.Tensor:
        inputs, lengths, targets = batch
        rated = torch.isfinite(targets)
        return F.mse_loss(self.net(inputs, lengths)[rated], targets[rated])

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._loss(batch)

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch), batch_size=len(batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)


def _chunks(inputs: list[np.ndarray], targets: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The clips cut into pieces of at most ``CHUNK`` frames: more, shorter sequences to learn on."""
    pieces = [(x[s:s + CHUNK], y[s:s + CHUNK]) for x, y in zip(inputs, targets) for s in range(0, len(x), CHUNK)]
    return [x for x, _ in pieces], [y for _, y in pieces]


def fit_frame_model(train: tuple[list[np.ndarray], list[np.ndarray]], val: tuple[list[np.ndarray], list[np.ndarray]],
                    seed: int = 0, progress: Callable[[], None] | None = None
                    ) -> tuple[FrameSequenceNet, dict[str, Any]]:
    """The GRU fit on the train clips (features, [T, 2] targets with NaN where not rated) for each of
    ``HIDDEN_SIZES``; the size and the epoch kept are the ones with the lowest squared error on the val clips."""
    frames = np.concatenate(train[0])
    best: tuple[float, FrameSequenceNet, dict[str, Any]] | None = None
    for hidden in HIDDEN_SIZES:
        L.seed_everything(seed, verbose=False)
        net = FrameSequenceNet(frames.shape[1], hidden)
        set_standardisation(net, frames)
        generator = torch.Generator().manual_seed(seed)
        keep = fit_keeping_best(_FrameModule(net),
                                DataLoader(_Sequences(*_chunks(*train)), batch_size=BATCH_SIZE, shuffle=True,
                                           collate_fn=_pad, generator=generator),
                                # One batch: the squared error over every validation frame.
                                DataLoader(_Sequences(*val), batch_size=len(val[0]), collate_fn=_pad),
                                MAX_EPOCHS, PATIENCE)
        if best is None or keep.best < best[0]:
            best = (keep.best, net.eval(), {"hidden": hidden, "epoch": keep.epoch, "n_features": int(frames.shape[1])})
        if progress is not None:
            progress()
    return best[1], best[2]


def predict_frames(net: FrameSequenceNet, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """[T, 2] valence and arousal of every frame of each clip."""
    net.eval()
    with torch.inference_mode():
        return [net(torch.from_numpy(x)[None], torch.tensor([len(x)]))[0].numpy() for x in inputs]


# -- the run -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContinuousRun:
    out: Path
    table: pd.DataFrame  # one row per method: test CCCs, validation CCCs, the dimensions it is kept for
    kept: dict[str, str]  # dimension -> method
    notes: list[str]

    @property
    def files(self) -> dict[str, Path]:
        names = ("continuous.csv", "continuous.md", "continuous.png", "splits.csv", "quarantine.csv", META_FILE,
                 GRU_FILE, FRAME_SPLITS_FILE)
        return {name: self.out / name for name in names if (self.out / name).is_file()}


def _prepared(data: Path, out: Path, face_model: Path, meta: dict[str, Any]) -> tuple[PreparedData, str]:
    """The data at the face model's input size, on the face model's own split where its run folder holds one for
    this data (else a split of its own, written to ``out``), and how the split was made."""
    config = config_from_metadata(meta)
    own = model_splits(face_model)
    if own.is_file():
        try:
            return prepare_data(data, config, splits_path=own, quarantine_path=out / "quarantine.csv"), \
                f"the face model's own ({own})"
        except AffectkitError:  # its split is of other data
            pass
    prepared = prepare_data(data, config, splits_path=out / "splits.csv", quarantine_path=out / "quarantine.csv")
    return prepared, "made here: the face model's run folder holds no split of this data"


def _scores(predicted: list[np.ndarray], truth: list[np.ndarray]) -> dict[str, float]:
    """CCC of each dimension over every rated frame of the clips."""
    p, t = np.concatenate(predicted), np.concatenate(truth)
    out = {}
    for d, name in enumerate(DIMENSIONS):
        rated = np.isfinite(t[:, d])
        out[f"{name}_ccc"] = ccc(p[rated, d], t[rated, d]) if rated.sum() > 1 else math.nan
    return out


def _report(out: Path, table: pd.DataFrame, kept: dict[str, str], source: Path, notes: list[str]) -> None:
    with atomic_path(out / "continuous.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    lines = [f"# Valence and arousal frame by frame: {source.name}", "", *[f"- {note}" for note in notes],
             "- kept: " + "; ".join(f"{d}: {m}" for d, m in kept.items()), "", "## Test frames (CCC)", "",
             markdown_table(table[["method", *SCORES, "kept_for"]]), "", "## Validation frames (what chose)", "",
             markdown_table(table[["method", *(f"val_{c}" for c in SCORES)]]), "", "## How the rows were made", "",
             f"- {AS_IS}: the face model's valence and arousal of each frame. {SMOOTHED}: the same, averaged over a "
             "centred window of frames within the clip, its width chosen for each dimension on the validation "
             f"frames. {SEQUENCE}: a bidirectional GRU over the clip's frames (the face model's valence, arousal and, "
             "where it predicts expressions, log-probabilities of each) that gives each frame its valence and "
             f"arousal, fit on the train clips in pieces of up to {CHUNK} frames, its size and epoch chosen by "
             "squared error on the validation clips.",
             "- Each method is chosen for each dimension by its CCC over the validation frames; the test frames score "
             "every method once, here.", "", "![scores](continuous.png)", ""]
    atomic_write_text(out / "continuous.md", "\n".join(lines))
    plot_benchmark(table.rename(columns={"method": "model"}), out / "continuous.png",
                   title="Valence and arousal of the test frames", columns=SCORES)


def run_continuous(data: str | Path, out: str | Path, face_model: str | Path, seed: int = 0) -> ContinuousRun:
    """Compare the face model as is, smoothed over each clip and read by a learned sequence model, frame by frame,
    on a data set annotated frame by frame; save what was kept for each dimension in ``out``."""
    data, out, face_model = Path(data), Path(out), Path(face_model)
    meta = read_metadata(face_model)
    if not predicts_valence_arousal(meta):
        raise AffectkitError(f"{face_model} predicts expressions only (no face it was trained on had valence or "
                             "arousal): give a model that predicts valence and arousal.")
    out.mkdir(parents=True, exist_ok=True)
    prepared, split_from = _prepared(data, out, face_model, meta)
    if prepared.index.layout not in FRAME_LAYOUTS:
        raise AffectkitError(f"{data} is read as {prepared.index.layout}, whose faces are not frames of clips "
                             "annotated frame by frame: give AFEW-VA's or Aff-Wild2's folder.")
    clips = frame_clips(prepared)
    by_split = {s: [c for c in clips if c.split == s] for s in ("train", "val", "test")}
    if not by_split["train"] or not by_split["val"]:
        raise AffectkitError(f"{data}: the split left no clip in train or val; give more clips.")
    model, _ = load_model(face_model)
    config = config_from_metadata(meta)
    pred = predict_split(model, prepared, prepared.positions("all"), temperature=float(meta.get("temperature") or 1.0),
                         tta_flip=config.tta_flip)
    # A valence/arousal model's logits say nothing: no columns, as its served faces have no probabilities.
    probabilities = pred.probs if pred.predicts_expression else pred.probs[:, :0]
    features = {c.id: frame_features(probabilities[c.positions], pred.valence_arousal[c.positions]) for c in clips}
    own = {c.id: pred.valence_arousal[c.positions] for c in clips}
    truth = {c.id: prepared.valence_arousal[c.positions] for c in clips}

    def of(split: str, values: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [values[c.id] for c in by_split[split]]

    windows = {}
    for d, name in enumerate(DIMENSIONS):
        val_ccc = {w: _scores([smooth(v, w) for v in of("val", own)], of("val", truth))[f"{name}_ccc"]
                   for w in WINDOWS}
        windows[name] = max(WINDOWS, key=lambda w: (np.nan_to_num(val_ccc[w], nan=-2.0), -w))
    smoothed = {c.id: np.column_stack([smooth(own[c.id][:, d], windows[n]) for d, n in enumerate(DIMENSIONS)])
                for c in clips}
    with reporter().bar() as bar:
        task = bar.add_task("Fitting the temporal model", total=len(HIDDEN_SIZES), info="")
        try:
            net, gru = fit_frame_model((of("train", features), of("train", truth)),
                                       (of("val", features), of("val", truth)), seed, lambda: bar.advance(task))
        except ValueError as exc:  # a loss that was never finite
            raise AffectkitError(f"{data}: {exc}.") from None
    sequence = dict(zip(features, predict_frames(net, list(features.values()))))
    rows, kept, best = [], {}, {}
    for method, values in ((AS_IS, own), (SMOOTHED, smoothed), (SEQUENCE, sequence)):
        val = _scores(of("val", values), of("val", truth))
        test = _scores(of("test", values), of("test", truth)) if by_split["test"] else {}
        rows.append({"method": method, **test, **{f"val_{k}": v for k, v in val.items()}})
        for name in DIMENSIONS:
            score = np.nan_to_num(val[f"{name}_ccc"], nan=-2.0)
            if name not in best or score > best[name]:
                best[name], kept[name] = score, method
    table = pd.DataFrame(rows).reindex(columns=["method", *SCORES, *(f"val_{c}" for c in SCORES)])
    table["kept_for"] = [", ".join(d for d in DIMENSIONS if kept[d] == m) for m in table["method"]]
    lengths = [len(c.positions) for c in clips]
    notes = [f"{len(clips)} clips, {sum(lengths):,} annotated frames ({int(np.median(lengths))} in the median clip)",
             "clips train / val / test " + " / ".join(str(len(by_split[s])) for s in ("train", "val", "test"))
             + f"; split {split_from}",
             "smoothing windows chosen on val: " + ", ".join(f"{n} {windows[n]} frames" for n in DIMENSIONS),
             f"temporal model: GRU of {gru['hidden']} units each way over {gru['n_features']} numbers a frame, epoch "
             f"{gru['epoch']} kept"]
    _report(out, table, kept, data, notes)
    # Aff-Wild2 read every n-th frame: the model learnt on that spacing, and new clips are read at it.
    step = config.affwild2_frame_step if prepared.index.layout == "affwild2" else 1
    _save(out, net, gru, kept, best, windows, face_model, step)
    write_fit_splits(out / FRAME_SPLITS_FILE, [record.image_path for record in prepared.records],
                     prepared.splits["split"].to_numpy(), digests=[record.digest for record in prepared.records])
    return ContinuousRun(out, table, kept, notes)


def _save(out: Path, net: FrameSequenceNet, gru: dict[str, Any], kept: dict[str, str], best: dict[str, float],
          windows: dict[str, int], face_model: Path, frame_step: int) -> None:
    import safetensors.torch

    with atomic_path(out / GRU_FILE) as tmp:
        safetensors.torch.save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    meta = {"format": "affectkit continuous model 1",
            "kept": {d: {"method": kept[d], "val_ccc": float(best[d])} for d in DIMENSIONS}, "windows": windows,
            "gru": {**gru, "sha256": sha256_of(out / GRU_FILE)},
            "frame_step": frame_step,
            "face_model": str(face_model.resolve()), "face_model_sha256": face_model_digest(face_model)}
    atomic_write_text(out / META_FILE, json.dumps(meta, indent=2))


# -- predicting with a kept model -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContinuousModel:
    """A kept temporal-frames model: the method kept for each dimension, its smoothing windows and GRU, and how far
    apart the frames it learnt on were."""

    folder: Path
    meta: dict[str, Any]
    net: FrameSequenceNet

    @property
    def methods(self) -> dict[str, str]:
        return {d: self.meta["kept"][d]["method"] for d in DIMENSIONS}

    @property
    def fps(self) -> float:
        """Frames a second it reads from a video: every frame, or every n-th where its data was read so."""
        return DEFAULT_FRAME_RATE / self.meta["frame_step"]

    def check_face_model(self, face_model: Path, action: str) -> None:
        require_face_model(self.meta["face_model_sha256"], face_model, f"The model in {self.folder}", action)

    def read(self, predictor: Predictor, path: Path, frame_rate: float = DEFAULT_FRAME_RATE) -> FrameOutputs | None:
        """The face model's outputs on the largest face of each frame of a video or frame folder, at its spacing."""
        return frame_outputs(predictor, path, None, None, fps=frame_rate / self.meta["frame_step"],
                             frame_rate=frame_rate)

    def values(self, outputs: FrameOutputs) -> np.ndarray:
        """[T, 2] valence and arousal of one clip's frames by the methods kept."""
        own = np.column_stack([outputs.valence, outputs.arousal])
        sequence = predict_frames(self.net, [frame_features(outputs.probabilities, own)])[0]
        columns = []
        for d, name in enumerate(DIMENSIONS):
            method = self.methods[name]
            columns.append(sequence[:, d] if method == SEQUENCE else smooth(own[:, d], self.meta["windows"][name])
                           if method == SMOOTHED else own[:, d])
        return np.column_stack(columns)


def load_continuous(model_dir: str | Path) -> ContinuousModel:
    """The model ``affectkit temporal-frames`` kept in ``model_dir``, its GRU's digest checked."""
    import safetensors.torch

    model_dir = Path(model_dir)
    meta = kept_description(model_dir / META_FILE, "affectkit temporal-frames")
    weights = verified_file(model_dir / GRU_FILE, meta["gru"]["sha256"], META_FILE, "affectkit temporal-frames")
    net = FrameSequenceNet(meta["gru"]["n_features"], meta["gru"]["hidden"])
    net.load_state_dict(safetensors.torch.load_file(str(weights)))
    return ContinuousModel(model_dir, meta, net.eval())


class FrameTruth(NamedTuple):
    valence: float
    arousal: float
    person: str  # its actor, video or clip
    digest: str  # of its content, by which a copy of the frame is known


def frame_truth(path: Path) -> dict[str, FrameTruth]:
    """Each annotated frame's labels, person and content digest, by its resolved file, where ``path`` is a data set
    annotated frame by frame (AFEW-VA or one of its clips, Aff-Wild2's valence/arousal frames); else none."""
    for layout, task in (("afew_va", "auto"), ("affwild2", "valence_arousal"), ("affwild2", "multi_task")):
        options = ReadOptions(affwild2_task=task)
        try:
            module, found = choose(path, options, layout)
            records = module.read(found, options).records
        except AffectkitError:
            continue
        return {str(r.image_path.resolve()): FrameTruth(r.valence, r.arousal, r.group or "", r.digest)
                for r in records if r.has_valence_arousal}
    return {}


def _labelled(table: pd.DataFrame, files: list[Path], clips: Path, model_dir: Path) -> pd.DataFrame:
    """``table`` (a row per frame of ``files``) with the labels the frames carry, where ``clips`` is a data set
    annotated frame by frame (``true_valence``, ``true_arousal``, ``person``: see
    :func:`~affectkit.multimodal.fusion.truth_columns`), and each frame's split in the model's fit (``fit_split``)
    where any of them fit it (by file, or by content where the data was read from a copy)."""
    truth = frame_truth(clips) if files else {}
    found = [truth.get(str(file.resolve())) for file in files]
    if any(found):
        table["true_valence"] = [math.nan if f is None else f.valence for f in found]
        table["true_arousal"] = [math.nan if f is None else f.arousal for f in found]
        table["person"] = ["" if f is None else f.person for f in found]
    digests = ["" if f is None else f.digest for f in found]
    if (fit := fit_splits(model_dir / FRAME_SPLITS_FILE, files, digests)) is not None:
        table["fit_split"] = fit
    return table


def predict_continuous(model_dir: str | Path, clips: str | Path, face_model: str | Path | None = None,
                       backend: str = "auto", detect: bool = True, frame_rate: float = DEFAULT_FRAME_RATE,
                       log: Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One row per frame with a face of every clip (a video, or a folder of frames taken ``frame_rate`` a second):
    clip, frame file (of a folder of frames), frame time, valence and arousal by the methods kept; where ``clips``
    is a data set annotated frame by frame (AFEW-VA's or Aff-Wild2's folder), each frame's labels and, where the
    model was fit on it, its split then (:func:`_labelled`); and the reasons of the clips that could not be read.
    Frames are read at the spacing the model learnt on: every frame, or every n-th where its data was read so
    (``affwild2_frame_step``). ``log``: where each clip's rows go as read (deleted at the end), so that the same
    call, stopped on the way, goes on from it."""
    model = load_continuous(model_dir)
    face_model = Path(face_model or model.meta["face_model"])
    model.check_face_model(face_model, "give that model with --face-model")
    predictor = Predictor(face_model, backend=backend, detect=detect)
    manifest = read_clips(clips, require_labels=False)
    key = {"clips": clips_signature(manifest), "model_sha256": sha256_of(model.folder / META_FILE),
           "face_model_sha256": face_model_digest(face_model), "detect": detect, "frame_rate": frame_rate,
           "frames": ["time", "valence", "arousal", "frame_file"]}
    rows, files, problems = [], [], [r.reason for r in manifest.rejected]
    with closing(ReadLog(log, key)) as read_log:
        if read_log.entries:
            reporter().note(f"{len(read_log.entries)} clip(s) read before the run stopped, read back from {log}")
        for sample in reporter().track(manifest.samples, total=len(manifest.samples), description="Predicting"):
            entry = read_log.entries.get(sample.id) or read_log.record(_clip_frames(model, predictor, sample,
                                                                                    frame_rate))
            if "problem" in entry:
                problems.append(entry["problem"])
                continue
            rows += [{"clip": sample.id, "frame_file": name, "time": t, "valence": v, "arousal": a}
                     for t, v, a, name in entry["frames"]]
            files += [sample.files["face"] / name for *_, name in entry["frames"] if name]
    table = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    if len(files) == len(table):  # every clip a folder of frames: the frames are files a data set may label
        table = _labelled(table, files, Path(clips), model.folder)
    if log is not None:
        log.unlink(missing_ok=True)
    return table, problems


def _clip_frames(model: ContinuousModel, predictor: Predictor, sample: Sample, frame_rate: float) -> dict[str, Any]:
    """One clip's frames as [time, valence, arousal, frame file] (the file blank in a video), or why it gave none:
    an entry of the read log."""
    path = sample.files["face"]
    try:
        outputs = model.read(predictor, path, frame_rate)
    except Reject as r:
        return {"id": sample.id, "problem": r.reason}
    if outputs is None:
        return {"id": sample.id, "problem": f"{path.name}: the face detector found no face in any frame"}
    # A folder's frame i is read at i / frame_rate seconds (multimodal.face.folder_window).
    files = frame_files(path) if path.is_dir() else None
    names = [""] * len(outputs.times) if files is None else [files[round(t * frame_rate)].name for t in outputs.times]
    return {"id": sample.id, "frames": [[float(t), float(v), float(a), name]
                                        for t, (v, a), name in zip(outputs.times, model.values(outputs), names)]}
