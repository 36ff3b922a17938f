"""Which frames of a clip a kept temporal model's verdict rests on: each frame the face model read is left out in
turn and the clip answered again, as occlusion covers each part of a face (:mod:`affectkit.inference.explain`).

A frame's ``importance`` is how far the probability of the clip's answered expression falls without it (negative:
without it the clip reads more surely so); ``valence_pull`` and ``arousal_pull``, how far the clip's valence and
arousal move with it in (positive: it raises them). The kept model is asked as it predicts (its GRU, its frame
statistics or both), so every kind of temporal model is explained alike, at one more answer per frame; a clip of
one frame has nothing to leave out (its values are empty). For a model that reads the frames' order (the GRU),
leaving one out also moves every later frame one step earlier: a frame can weigh by where it sits as well as by
what it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from affectkit.multimodal.face import FrameOutputs
from affectkit.progress import reporter
from affectkit.temporal.run import TemporalModel, clip_predictions, read_for_prediction
from affectkit.temporal.sequences import remove_parts

TARGETS = ("valence", "arousal")


def without_frame(outputs: FrameOutputs, frame: int) -> FrameOutputs:
    """``outputs`` with its ``frame``-th frame left out."""
    keep = np.arange(len(outputs.times)) != frame

    def kept(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else values[keep]

    return FrameOutputs(outputs.times[keep], outputs.probabilities[keep], kept(outputs.valence),
                        kept(outputs.arousal), kept(outputs.embeddings))


def frame_importance(model: TemporalModel, clip: str, outputs: FrameOutputs,
                     class_names: Sequence[str]) -> pd.DataFrame:
    """One row per frame of the clip ``clip`` the face model read (``outputs``): its time, the face model's class
    for it and its probability of the clip's answered expression (``face_p_answered``), and the frame's
    ``importance`` and ``valence_pull`` / ``arousal_pull`` to the kept model's verdict, where it gives them."""
    names = list(class_names)
    whole = model.predict([outputs], names).iloc[0]
    count = len(outputs.times)
    left = model.predict([without_frame(outputs, i) for i in range(count)], names) if count > 1 else None
    rows = pd.DataFrame({"id": clip, "frame": np.arange(count), "time": outputs.times,
                         "face_expression": [names[i] for i in outputs.probabilities.argmax(axis=1)]})
    if "expression" in whole:
        answered = whole["expression"]
        column = f"p_{answered.lower()}"
        rows["clip_expression"] = answered
        rows["face_p_answered"] = (outputs.probabilities[:, names.index(answered)] if answered in names
                                   else np.nan)
        rows["importance"] = np.nan if left is None else whole[column] - left[column].to_numpy()
    for target in TARGETS:
        if target in whole:
            rows[f"{target}_pull"] = np.nan if left is None else whole[target] - left[target].to_numpy()
    return rows


@dataclass(frozen=True)
class ExplainedClips:
    predictions: pd.DataFrame  # one row per clip, as predict_temporal gives it
    frames: pd.DataFrame  # one row per frame read of each clip (frame_importance)
    problems: list[str]  # why each clip that could not be read was not


def explain_temporal(model_dir: str | Path, clips: str | Path, face_model: str | Path | None = None,
                     backend: str = "auto", fold: int = 1, checkpoint: Path | None = None) -> ExplainedClips:
    """:func:`affectkit.temporal.predict_temporal` on ``clips``, and the :func:`frame_importance` of every frame of
    each clip read."""
    read = read_for_prediction(model_dir, clips, face_model, backend, fold, checkpoint)
    ids = [s.id for s in read.frames.samples]
    frames = [frame_importance(read.model, clip, outputs, read.class_names)
              for clip, outputs in reporter().track(list(zip(ids, read.frames.outputs)), total=len(ids),
                                                       description="Leaving frames out")]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["id", "frame", "time"])
    explained = ExplainedClips(clip_predictions(read), table, read.problems)
    if checkpoint is not None:
        remove_parts(checkpoint)
    return explained


__all__ = ["ExplainedClips", "explain_temporal", "frame_importance", "without_frame"]
