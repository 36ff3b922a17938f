"""The face modality: an affectkit face model's verdict on a sample's image, or on the frames of its video window.

The features are what the model says: its expression probabilities, valence and arousal, averaged over the frames
where a face was found, and how much valence and arousal moved between those frames. The largest face of a frame is
the sample's (a recording of one person). A window without any face leaves the sample's face features empty.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from affectkit.data.records import Reject
from affectkit.inference.images import ImageError, read_image
from affectkit.inference.media import VIDEO_SUFFIXES
from affectkit.inference.predictor import Predictor

DEFAULT_FRAMES_PER_SECOND = 2.0


def feature_names(class_names: list[str]) -> list[str]:
    return [*(f"face_p_{name.lower()}" for name in class_names), "face_valence", "face_arousal",
            "face_valence_std", "face_arousal_std"]


def _largest(faces: list[dict[str, Any]]) -> dict[str, Any] | None:
    def area(face: dict[str, Any]) -> float:
        box = face.get("box")
        return math.inf if box is None else (box[2] - box[0]) * (box[3] - box[1])

    return max(faces, key=area) if faces else None


def _video_window(path: Path, start: float | None, end: float | None, fps: float) -> list[np.ndarray]:
    """RGB frames of the window, about ``fps`` a second."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise Reject("face_unreadable", f"video {path.name} cannot be opened")
    try:
        native = capture.get(cv2.CAP_PROP_FPS) or 25.0
        first = int(round((start or 0.0) * native))
        last = None if end is None else int(round(end * native))
        step = max(1, int(round(native / fps)))
        capture.set(cv2.CAP_PROP_POS_FRAMES, first)
        frames, index = [], first
        while last is None or index < max(last, first + 1):
            if (index - first) % step:
                ok = capture.grab()  # skips decoding the frames not read
            else:
                ok, bgr = capture.read()
                if ok:
                    frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if not ok:
                break
            index += 1
    finally:
        capture.release()
    if not frames:
        raise Reject("window_outside", f"video {path.name} has no frame in the window {start or 0:g}-"
                                       f"{'end' if end is None else f'{end:g}'} s")
    return frames


def face_features(predictor: Predictor, path: Path, start: float | None, end: float | None,
                  fps: float = DEFAULT_FRAMES_PER_SECOND) -> dict[str, float] | None:
    """The sample's face features, or None when no frame shows a face."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        frames = _video_window(path, start, end, fps)
    else:
        try:
            frames = [read_image(path)]
        except ImageError as exc:
            raise Reject("face_unreadable", f"face image {path.name}: {exc}") from None
    found = [face for faces in predictor.predict_images(frames) if (face := _largest(faces)) is not None]
    if not found:
        return None
    names = predictor.class_names
    probabilities = np.array([[face["probabilities"][name] for name in names] for face in found])
    valence = np.array([face["valence"] for face in found])
    arousal = np.array([face["arousal"] for face in found])
    values = [*probabilities.mean(axis=0), valence.mean(), arousal.mean(), valence.std(), arousal.std()]
    return dict(zip(feature_names(names), map(float, values)))
