"""The face modality: an affectkit face model's verdict on a sample's image, or on the frames of its video window.

The features are what the model says: its expression probabilities, valence and arousal, averaged over the frames
where a face was found; and how the face moved over the window: the spread of valence and arousal, their trend (a
slope per second) and each expression's peak probability (an expression that rises to its apex late in a window
weighs little in the mean). A still image has no movement: spread and trend 0, peaks equal to its probabilities.
The largest face of a frame is the sample's (a recording of one person). A window without any face leaves the
sample's face features empty. A clip may be a video or a folder of its frames (DFEW's and FERV39k's clips): frame
``i`` of a folder, in natural order of the file names, is at ``i / frame_rate`` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from affectkit.data.records import Reject, frame_files
from affectkit.inference.faces import Face
from affectkit.inference.images import ImageError, read_image
from affectkit.inference.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, frame_rate_of, frame_step, video_frames
from affectkit.inference.predictor import Predictor

DEFAULT_FRAMES_PER_SECOND = 2.0
DEFAULT_FRAME_RATE = 25.0  # of a folder of frames, which does not say; DFEW's and AFEW's films run at about this


def _slope(times: np.ndarray, values: np.ndarray) -> float:
    return float(np.polyfit(times, values, 1)[0]) if len(np.unique(times)) > 1 else 0.0


def largest_box(boxes: Sequence[Sequence[float] | None]) -> int:
    """The index of the largest box (0 without detection, where the whole image is the one face and has no box)."""
    if not boxes or boxes[0] is None:
        return 0
    return int(np.argmax([(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes]))


def largest_face(faces: list[Face]) -> int:
    """The index of the largest face (0 without detection)."""
    return largest_box([face.box for face in faces])


def video_window(path: Path, start: float | None, end: float | None,
                 fps: float) -> tuple[list[np.ndarray], np.ndarray]:
    """RGB frames of the window, about ``fps`` a second, and their times in seconds."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise Reject("face_unreadable", f"video {path.name} cannot be opened")
    try:
        native = frame_rate_of(capture)
        first = int(round((start or 0.0) * native))
        last = None if end is None else int(round(end * native))
        stop = None if last is None else max(last, first + 1)
        capture.set(cv2.CAP_PROP_POS_FRAMES, first)
        frames, times = [], []
        for offset, rgb in video_frames(capture, every=frame_step(native, fps)):
            if stop is not None and first + offset >= stop:
                break
            frames.append(rgb)
            times.append((first + offset) / native)
    finally:
        capture.release()
    if not frames:
        raise Reject("window_outside", f"video {path.name} has no frame in the window {start or 0:g}-"
                                       f"{'end' if end is None else f'{end:g}'} s")
    return frames, np.asarray(times)


def folder_window(folder: Path, start: float | None, end: float | None, fps: float,
                  frame_rate: float = DEFAULT_FRAME_RATE) -> tuple[list[np.ndarray], np.ndarray]:
    """RGB frames of the window of a folder of frames (frame ``i`` at ``i / frame_rate`` s), about ``fps`` a second,
    and their times in seconds."""
    files = frame_files(folder)
    if not files:
        raise Reject("face_unreadable", f"frame folder {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    times = np.arange(len(files)) / frame_rate
    inside = (times >= (start or 0.0)) & (times < (np.inf if end is None else end))
    chosen = np.flatnonzero(inside)[::frame_step(frame_rate, fps)]
    if not chosen.size:
        raise Reject("window_outside", f"frame folder {folder.name} has no frame in the window {start or 0:g}-"
                                       f"{'end' if end is None else f'{end:g}'} s")
    try:
        return [read_image(files[i]) for i in chosen], times[chosen]
    except ImageError as exc:
        raise Reject("face_unreadable", f"frame folder {folder.name}: {exc}") from None


def read_window(path: Path, start: float | None, end: float | None, fps: float,
                frame_rate: float = DEFAULT_FRAME_RATE) -> tuple[list[np.ndarray], np.ndarray]:
    """RGB frames (about ``fps`` a second) of the window of a video or a folder of frames, and their times in
    seconds; an image is one frame at time 0. Raises Reject for a file that cannot be read or a window outside the
    clip."""
    if path.is_dir():
        return folder_window(path, start, end, fps, frame_rate)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return video_window(path, start, end, fps)
    try:
        return [read_image(path)], np.zeros(1)
    except ImageError as exc:
        raise Reject("face_unreadable", f"face image {path.name}: {exc}") from None


@dataclass(frozen=True)
class FrameOutputs:
    """What the face model said of each frame of a window in which it found a face (the largest one)."""

    times: np.ndarray  # seconds, [T]
    probabilities: np.ndarray  # [T, classes]
    valence: np.ndarray | None  # [T]; None from an expression model (trained without valence/arousal)
    arousal: np.ndarray | None  # [T]
    embeddings: np.ndarray | None = None  # [T, D] the face model's embedding of each face, where asked for


def _outputs(times: list[float], faces: list[dict[str, Any]], class_names: list[str],
             embeddings: np.ndarray | None = None) -> FrameOutputs:
    """FrameOutputs of one face result (as the predictor gives them) a frame."""
    affect = [None if faces[0][k] is None else np.array([face[k] for face in faces]) for k in ("valence", "arousal")]
    return FrameOutputs(np.array(times), np.array([[face["probabilities"][c] for c in class_names] for face in faces]),
                        *affect, embeddings)


def frame_outputs(predictor: Predictor, path: Path, start: float | None, end: float | None,
                  fps: float = DEFAULT_FRAMES_PER_SECOND, embeddings: bool = False,
                  frame_rate: float = DEFAULT_FRAME_RATE) -> FrameOutputs | None:
    """The face model's outputs on the frames of the window of a video or a folder of frames (an image is one frame
    at time 0), and with ``embeddings`` its embedding of each face; None when no frame shows a face. Raises Reject
    for a file that cannot be read or a window outside the clip."""
    frames, times = read_window(path, start, end, fps, frame_rate)
    found = [(t, crops[largest_face(faces)]) for t, (faces, crops) in zip(times, map(predictor.find_faces, frames))
             if crops]
    if not found:
        return None
    crops = [crop for _, crop in found]
    return _outputs([t for t, _ in found], predictor.predict_batch(crops), predictor.class_names,
                    predictor.embed_batch(crops) if embeddings else None)


def served_frame_outputs(frames: Sequence[tuple[float, list[dict[str, Any]]]],
                         class_names: list[str]) -> FrameOutputs | None:
    """What :func:`frame_outputs` gives, from frames already served (time in seconds, the frame's unsmoothed face
    results as :meth:`Predictor.predict_images` returns them): the largest face of each frame that has one."""
    found = [(t, faces[largest_box([face["box"] for face in faces])]) for t, faces in frames if faces]
    if not found:
        return None
    return _outputs([t for t, _ in found], [face for _, face in found], class_names)


def summarise(outputs: FrameOutputs, class_names: list[str]) -> dict[str, float]:
    """The window's face features: each class's mean probability (``face_p_<class>``), the means, spread and trend
    of valence and arousal (``face_valence``, ``face_valence_std``, ``face_valence_slope``, ...), each class's peak
    probability (``face_peak_p_<class>``); only what the face model predicts."""
    names = [name.lower() for name in class_names]
    features = dict(zip((f"face_p_{n}" for n in names), outputs.probabilities.mean(axis=0)))
    affect = {"valence": outputs.valence, "arousal": outputs.arousal}
    if outputs.valence is not None:
        features |= {f"face_{k}": v.mean() for k, v in affect.items()}
        features |= {f"face_{k}_std": v.std() for k, v in affect.items()}
        features |= {f"face_{k}_slope": _slope(outputs.times, v) for k, v in affect.items()}
    features |= dict(zip((f"face_peak_p_{n}" for n in names), outputs.probabilities.max(axis=0)))
    return {k: float(v) for k, v in features.items()}


def face_features(predictor: Predictor, path: Path, start: float | None, end: float | None,
                  fps: float = DEFAULT_FRAMES_PER_SECOND, frame_rate: float = DEFAULT_FRAME_RATE
                  ) -> dict[str, float] | None:
    """The sample's face features, or None when no frame shows a face."""
    outputs = frame_outputs(predictor, path, start, end, fps, frame_rate=frame_rate)
    return None if outputs is None else summarise(outputs, predictor.class_names)
