"""Clips -> what the face model says of each of their frames: the sequences the temporal model reads, and the window
summaries (means, movement, peaks) the frame-statistics model reads."""

from __future__ import annotations

import json
import time
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
CHECKPOINT_SECONDS = 120.0  # how often a long read of clips stores what it has read (a part of it)


@dataclass
class ClipFrames:
    """Every readable clip's frame outputs (``outputs[i]`` belongs to ``samples[i]``), and the clips quarantined."""

    samples: list[Sample]
    outputs: list[FrameOutputs]
    rejected: list[Rejection]


def read_frames(manifest: MultimodalManifest, predictor: Predictor, fps: float, embeddings: bool = False,
                description: str = "Reading clips", frame_rate: float = DEFAULT_FRAME_RATE,
                checkpoint: Path | None = None, key: dict[str, Any] | None = None,
                every_seconds: float | None = None) -> ClipFrames:
    """The face model on every clip's frames (``fps`` a second; with ``embeddings`` its embedding of each face too;
    a folder of frames taken ``frame_rate`` a second), with a progress bar. A clip that cannot be read, or in which
    no frame shows a face, is quarantined with the reason. With ``checkpoint`` (where the whole is to be stored,
    :func:`store_frames`), the clips read so far are stored beside it every ``every_seconds`` (default
    :data:`CHECKPOINT_SECONDS`), each time those read since the last (:func:`part_paths`, for ``key``), and on
    Ctrl-C; an interrupted read goes on from them: reading a large set's clips takes hours on a CPU."""
    every_seconds = CHECKPOINT_SECONDS if every_seconds is None else every_seconds
    done = _stored_parts(checkpoint, key, manifest) if checkpoint is not None else ClipFrames([], [], [])
    finished = {s.id for s in done.samples} | {r.id for r in done.rejected}
    if finished:
        reporter().note(f"{len(finished)} clip(s) read before the run stopped, read back from beside {checkpoint}")
    new = ClipFrames([], [], [])
    saved = time.monotonic()
    remaining = [s for s in manifest.samples if s.id not in finished]
    try:
        for sample in reporter().track(remaining, total=len(remaining), description=description):
            path = sample.files["face"]
            try:
                found = frame_outputs(predictor, path, sample.start, sample.end, fps, embeddings, frame_rate)
                if found is None:
                    raise Reject(NO_FACE, f"{path.name}: the face detector found no face in any frame read")
            except Reject as r:
                new.rejected.append(Rejection(sample.id, str(path), r.kind, r.reason))
            else:
                new.samples.append(sample)
                new.outputs.append(found)
            if checkpoint is not None and time.monotonic() - saved >= every_seconds:
                _store_part(checkpoint, key, new)
                done, new, saved = _joined(done, new), ClipFrames([], [], []), time.monotonic()
    except KeyboardInterrupt:
        if checkpoint is not None and (new.samples or new.rejected):  # Ctrl-C: the clips since the last part too
            _store_part(checkpoint, key, new)
        raise
    return _joined(done, new)


def _joined(first: ClipFrames, second: ClipFrames) -> ClipFrames:
    return ClipFrames(first.samples + second.samples, first.outputs + second.outputs,
                      first.rejected + second.rejected)


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


def store_frames(path: Path, key: dict[str, Any] | None, frames: ClipFrames) -> None:
    """``path`` (.npz: every clip's frames end to end, and where each clip starts) and ``path.json`` (the key, the
    clips' ids and the quarantined ones)."""
    lengths = np.array([len(o.times) for o in frames.outputs], dtype=np.int64)
    arrays = {name: np.concatenate([getattr(o, name) for o in frames.outputs]) for name in FIELDS
              if frames.outputs and getattr(frames.outputs[0], name) is not None}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, lengths=lengths, **arrays)
    stored = {"key": key, "ids": [s.id for s in frames.samples], "rejected": [vars(r) for r in frames.rejected]}
    atomic_write_text(path.with_suffix(".json"), json.dumps(stored, indent=2))


def part_pattern(path: Path, number: int | None = None) -> Path:
    """Where :func:`read_frames` stores the parts of ``path`` while reading: part ``number`` of them, or (None) the
    glob pattern of them all (``<stem>.part-*.npz`` beside it)."""
    return path.with_name(f"{path.stem}.part-{'*' if number is None else f'{number:05d}'}.npz")


def part_paths(path: Path) -> list[Path]:
    """The parts :func:`read_frames` stored beside ``path`` while reading, in the order they were written."""
    return sorted(path.parent.glob(part_pattern(path).name))


def remove_parts(path: Path) -> None:
    """Delete the parts once the whole is stored."""
    _delete(part_paths(path))


def _delete(parts: list[Path]) -> None:
    for part in parts:
        part.with_suffix(".json").unlink(missing_ok=True)
        part.unlink(missing_ok=True)


def _store_part(path: Path, key: dict[str, Any] | None, frames: ClipFrames) -> None:
    # The .json is written after the .npz, and a part is read only where both are: a part cut short is no part.
    parts = part_paths(path)
    number = int(parts[-1].stem.rsplit("-", 1)[1]) + 1 if parts else 1
    path.parent.mkdir(parents=True, exist_ok=True)
    store_frames(part_pattern(path, number), key, frames)


def _stored_parts(path: Path, key: dict[str, Any] | None, manifest: MultimodalManifest) -> ClipFrames:
    """The clips the parts beside ``path`` hold, where they were stored for ``key``. Parts of other inputs (another
    face model, other clips) are deleted, as they would never be read; so is a last part cut short (its .json never
    written), whose clips are read again."""
    done = ClipFrames([], [], [])
    parts = part_paths(path)
    for number, part in enumerate(parts):
        if not part.with_suffix(".json").is_file():
            _delete(parts[number:])
            return done
        found = stored_frames(part, key, manifest)
        if found is None:
            _delete(parts)
            return ClipFrames([], [], [])
        done = _joined(done, found)
    return done


def stored_frames(path: Path, key: dict[str, Any] | None, manifest: MultimodalManifest) -> ClipFrames | None:
    """What :func:`store_frames` wrote, when it was written for the same ``key``; else None."""
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return None
    stored = json.loads(meta.read_text())
    by_id = {s.id: s for s in manifest.samples}
    if stored.get("key") != key or any(i not in by_id for i in stored["ids"]):
        return None
    with np.load(path, allow_pickle=False) as arrays:
        bounds = np.concatenate([[0], np.cumsum(arrays["lengths"])])
        outputs = [FrameOutputs(*(arrays[name][a:b] if name in arrays else None for name in FIELDS))
                   for a, b in zip(bounds[:-1], bounds[1:])]
    return ClipFrames([by_id[i] for i in stored["ids"]], outputs, [Rejection(**r) for r in stored["rejected"]])
