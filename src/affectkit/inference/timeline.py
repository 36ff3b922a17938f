"""Video timelines: follow faces across frames, smooth each face's predictions over time, plot the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from affectkit.inference.annotate import PALETTE
from affectkit.inference.abstention import Abstention
from affectkit.inference.predictor import expression_fields


def iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    id: int
    box: list[int] | None
    last_seen: int
    state: dict[str, Any] = field(default_factory=dict)  # smoothed probabilities, valence, arousal


class TrackSmoother:
    """Online (causal) tracking by box overlap and exponential smoothing per track.

    ``alpha`` is the weight of the newest frame: 1 keeps the raw predictions, smaller values smooth more. Being
    causal, it gives the same numbers a live camera feed would get.
    """

    def __init__(self, class_names: list[str], alpha: float | None = None, min_iou: float = 0.3, max_gap: int = 5,
                 abstention: Abstention | None = None):
        if alpha is not None and not 0 < alpha <= 1:
            raise ValueError(f"smoothing alpha must be in (0, 1], got {alpha}")
        self.class_names = class_names
        self.alpha = alpha
        self.abstention = abstention  # a smoothed face is abstained on by its smoothed confidence
        self.min_iou = min_iou
        self.max_gap = max_gap  # processed frames a face may vanish for and keep its track
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._step = 0

    def update(self, faces: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Faces of the next processed frame -> the same faces with ``track`` set (and smoothed when alpha is set)."""
        self._tracks = [t for t in self._tracks if self._step - t.last_seen <= self.max_gap]
        free = list(self._tracks)
        out = []
        for face in faces:
            track = self._match(face, free)
            if track is None:
                track = _Track(self._next_id, face["box"], self._step)
                self._next_id += 1
                self._tracks.append(track)
            else:
                free.remove(track)
            track.box, track.last_seen = face["box"], self._step
            out.append({**self._smooth(track, face), "track": track.id})
        self._step += 1
        return out

    def _match(self, face: dict[str, Any], candidates: list[_Track]) -> _Track | None:
        if face["box"] is None:  # undetected input: the whole frame is a single face
            return candidates[0] if candidates else None
        scored = [(iou(face["box"], t.box), t) for t in candidates if t.box is not None]
        best = max(scored, key=lambda s: s[0], default=(0.0, None))
        return best[1] if best[0] >= self.min_iou else None

    def _smooth(self, track: _Track, face: dict[str, Any]) -> dict[str, Any]:
        if self.alpha is None:
            return face
        probs = np.array([face["probabilities"][c] for c in self.class_names])
        # An expression model's valence and arousal are None, and stay so.
        current = {"probs": probs, **{k: face[k] for k in ("valence", "arousal") if face[k] is not None}}
        if track.state:
            a = self.alpha
            current = {k: a * v + (1 - a) * track.state[k] for k, v in current.items()}
        track.state = current
        return {**face, **expression_fields(self.class_names, current["probs"], self.abstention),
                **{k: float(current[k]) for k in ("valence", "arousal") if k in current}}


def smooth_frames(frames: list[tuple[int, list[dict[str, Any]]]], class_names: list[str],
                  alpha: float | None, abstention: Abstention | None = None) -> list[tuple[int, list[dict[str, Any]]]]:
    """Frames' faces (frame index, faces) followed across the frames and, with ``alpha``, smoothed, as
    :class:`TrackSmoother` does them one by one."""
    smoother = TrackSmoother(class_names, alpha, abstention=abstention)
    return [(index, smoother.update(faces)) for index, faces in frames]


def timeline_figure(rows: list[dict[str, Any]], class_names: list[str], title: str,
                    trained_classes: list[str] | None = None) -> Any:
    """The figure of :func:`plot_timeline`, or None where no frame had a face."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(rows)
    faces = frame[frame["status"] == "ok"]
    if faces.empty:
        return None
    track = faces["track"].value_counts().idxmax()
    # Every processed frame stays on the x axis; frames where the face was missing show as gaps.
    series = faces[faces["track"] == track].set_index("frame").reindex(sorted(frame["frame"].unique()))
    x = series.index.to_numpy()
    affect = faces["valence"].notna().any()
    if class_names and affect:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[2, 1])
    elif class_names:  # an expression model
        fig, top = plt.subplots(figsize=(10, 4))
        bottom = None
    else:  # a valence/arousal model
        fig, bottom = plt.subplots(figsize=(10, 3))
        bottom.set_title(f"{title} (face track {track})")
    if class_names:
        # Classes absent from the model's training data have probability 0: no band, and named once below.
        trained = [c for c in class_names if trained_classes is None or c in trained_classes]
        probs = series[[f"p_{c}" for c in trained]].to_numpy(dtype=float)
        # Each class keeps the colour it has on annotated images and the web page.
        colours = [tuple(v / 255 for v in PALETTE[class_names.index(c) % len(PALETTE)]) for c in trained]
        top.stackplot(x, np.nan_to_num(probs).T, labels=trained, colors=colours, alpha=0.9)
        top.set_ylim(0, 1)
        top.set_ylabel("probability")
        untrained = [c for c in class_names if c not in trained]
        top.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8,
                   title=f"not learnt: {', '.join(untrained)}" if untrained else None, title_fontsize=7)
        top.set_title(f"{title} (face track {track})")
        if bottom is None:
            top.set_xlabel("frame")
    if bottom is not None:
        bottom.plot(x, series["valence"].to_numpy(dtype=float), label="valence", color="tab:green")
        bottom.plot(x, series["arousal"].to_numpy(dtype=float), label="arousal", color="tab:red")
        bottom.axhline(0, color="grey", lw=0.5)
        bottom.set_ylim(-1.05, 1.05)
        bottom.set_xlabel("frame")
        bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    return fig


def plot_timeline(rows: list[dict[str, Any]], class_names: list[str], path: Path, title: str,
                  trained_classes: list[str] | None = None) -> Path | None:
    """Stacked class probabilities over frames (where the model predicts expressions; the classes it learnt, all
    where ``trained_classes`` is None) and valence/arousal lines (where it predicts them), for the longest-lived face
    track. None where no frame had a face."""
    import matplotlib.pyplot as plt

    fig = timeline_figure(rows, class_names, title, trained_classes)
    if fig is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def track_summaries(frames: list[tuple[int, list[dict[str, Any]]]], class_names: list[str],
                    abstention: Abstention | None = None) -> list[dict[str, Any]]:
    """Per face track, longest first: the frames it was seen in, its mean probabilities and the expression they
    give (``abstained`` where ``abstention``, where one is given, holds back their confidence), its mean valence
    and arousal."""
    by_track: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for index, faces in frames:
        for face in faces:
            by_track.setdefault(face["track"], []).append((index, face))
    summaries = []
    for track, seen in by_track.items():
        probabilities = np.mean([[face["probabilities"][c] for c in class_names] for _, face in seen], axis=0)
        expression = expression_fields(class_names, probabilities, abstention)
        summaries.append({
            "track": track, "frames": len(seen), "first_frame": seen[0][0], "last_frame": seen[-1][0],
            **{k: expression[k] for k in ("expression", "confidence", "abstained", "probabilities") if k in expression},
            **{k: None if seen[0][1][k] is None else float(np.mean([face[k] for _, face in seen]))
               for k in ("valence", "arousal")},
        })
    return sorted(summaries, key=lambda s: (-s["frames"], s["track"]))
