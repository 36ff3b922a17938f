"""Clips -> what the face model says of each of their frames: the sequences the temporal model reads, and the window
summaries (means, movement, peaks) the frame-statistics model reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.atomic import atomic_path, atomic_write_text
from affectkit.data.records import Reject, Rejection
from affectkit.inference.predictor import Predictor
from affectkit.multimodal.face import DEFAULT_FRAME_RATE, FrameOutputs, frame_outputs
from affectkit.multimodal.manifest import MultimodalManifest, Sample
from affectkit.progress import reporter

NO_FACE = "no_face"
FIELDS = ("times", "probabilities", "valence", "arousal", "embeddings")  # FrameOutputs', in its order


@dataclass
class ClipFrames:
    """Every readable clip's frame outputs (``outputs[i]`` belongs to ``samples[i]``), and the clips quarantined."""

    samples: list[Sample]
    outputs: list[FrameOutputs]
    rejected: list[Rejection]


def read_frames(manifest: MultimodalManifest, predictor: Predictor, fps: float, embeddings: bool = False,
                description: str = "Reading clips", frame_rate: float = DEFAULT_FRAME_RATE) -> ClipFrames:
    """The face model on every clip's frames (``fps`` a second; with ``embeddings`` its embedding of each face too;
    a folder of frames taken ``frame_rate`` a second), with a progress bar. A clip that cannot be read, or in which
    no frame shows a face, is quarantined with the reason."""
    samples, outputs, rejected = [], [], []
    for sample in reporter().track(manifest.samples, total=len(manifest.samples), description=description):
        path = sample.files["face"]
        try:
            found = frame_outputs(predictor, path, sample.start, sample.end, fps, embeddings, frame_rate)
            if found is None:
                raise Reject(NO_FACE, f"{path.name}: the face detector found no face in any frame read")
        except Reject as r:
            rejected.append(Rejection(sample.id, str(path), r.kind, r.reason))
            continue
        samples.append(sample)
        outputs.append(found)
    return ClipFrames(samples, outputs, rejected)


def output_columns(probabilities: np.ndarray, valence: np.ndarray | None, arousal: np.ndarray | None
                   ) -> list[np.ndarray]:
    """A face model's per-frame outputs as a sequence model reads them: log-probabilities ([T, 0] from a
    valence/arousal model), valence and arousal (none from an expression model)."""
    log_p = np.log(np.clip(probabilities, 1e-6, None))
    return [log_p, *([] if valence is None else [valence, arousal])]


def frame_inputs(outputs: FrameOutputs) -> np.ndarray:
    """[T, classes + 3 (+ D)] per frame: log-probabilities, valence, arousal (what the face model predicts of them),
    seconds since the clip's first face (and the face's embedding, where read)."""
    since = outputs.times - outputs.times[0]
    extra = [] if outputs.embeddings is None else [outputs.embeddings]
    return np.column_stack([*output_columns(outputs.probabilities, outputs.valence, outputs.arousal), since,
                            *extra]).astype(np.float32)


def padded(outputs: list[FrameOutputs]) -> tuple[np.ndarray, np.ndarray]:
    """([N, T_max, F] zero-padded inputs, [N] lengths)."""
    inputs = [frame_inputs(o) for o in outputs]
    lengths = np.array([len(x) for x in inputs], dtype=np.int64)
    out = np.zeros((len(inputs), int(lengths.max()), inputs[0].shape[1]), dtype=np.float32)
    for i, x in enumerate(inputs):
        out[i, : len(x)] = x
    return out, lengths


# -- the frame outputs stored beside a run, read back by a rerun with the same inputs --------------------------------


def store_frames(path: Path, key: dict[str, Any], frames: ClipFrames) -> None:
    """``path`` (.npz: every clip's frames end to end, and where each clip starts) and ``path.json`` (the key, the
    clips' ids and the quarantined ones)."""
    lengths = np.array([len(o.times) for o in frames.outputs])
    arrays = {name: np.concatenate([getattr(o, name) for o in frames.outputs]) for name in FIELDS
              if getattr(frames.outputs[0], name) is not None}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, lengths=lengths, **arrays)
    stored = {"key": key, "ids": [s.id for s in frames.samples], "rejected": [vars(r) for r in frames.rejected]}
    atomic_write_text(path.with_suffix(".json"), json.dumps(stored, indent=2))


def stored_frames(path: Path, key: dict[str, Any], manifest: MultimodalManifest) -> ClipFrames | None:
    """What :func:`store_frames` wrote, when it was written for the same ``key``; else None."""
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return None
    stored = json.loads(meta.read_text())
    if stored.get("key") != key:
        return None
    by_id = {s.id: s for s in manifest.samples}
    with np.load(path, allow_pickle=False) as arrays:
        bounds = np.concatenate([[0], np.cumsum(arrays["lengths"])])
        outputs = [FrameOutputs(*(arrays[name][a:b] if name in arrays else None for name in FIELDS))
                   for a, b in zip(bounds[:-1], bounds[1:])]
    return ClipFrames([by_id[i] for i in stored["ids"]], outputs, [Rejection(**r) for r in stored["rejected"]])
