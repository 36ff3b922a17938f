"""Labelled clips -> an image data set of their faces, one image per frame read, in class folders: what a face model
for the clips' domain trains on (``affectkit run``) before ``affectkit temporal`` reads the clips with it.

The images are ``OUT/[<split>/]<Class>/<person>__<clip>_f<k>.jpg`` (``<clip>__f<k>.jpg`` where the clips do not say
who is who): the clip's split folder where the clips have a split, and its person or clip first in the name.
``OUT/affectkit.yaml`` sets ``group_pattern`` to that prefix, so every split affectkit makes keeps each person's (or
clip's) frames on one side: frames of one clip are near copies of each other, and letting them fall on both sides of
a split overstates accuracy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from affectkit.atomic import atomic_path
from affectkit.config import CLASS_NAMES, DATA_CONFIG_NAME
from affectkit.data.records import Reject, Rejection, quarantine_frame
from affectkit.errors import AffectkitError
from affectkit.inference.faces import FaceDetector, crop_face
from affectkit.multimodal.face import DEFAULT_FRAME_RATE, largest_face, read_window
from affectkit.progress import reporter
from affectkit.temporal.clips import read_clips
from affectkit.temporal.sequences import NO_FACE

GROUP_PATTERN = r"^(.+?)__"
DONE_FILE = "clips_done.txt"  # one clip id a line, each written once all its frames are: a rerun skips them


@dataclass(frozen=True)
class ExtractedFrames:
    out: Path
    images: int
    clips: int  # clips that gave at least one image
    rejected: list[Rejection]


def _key(text: str) -> str:
    """A file-name-safe key that never holds the group separator ``__``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.") or "clip"


def _square(frame: np.ndarray, size: int) -> np.ndarray:
    """The centre square of a frame (a face crop already, where faces are not detected), resized."""
    height, width = frame.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return cv2.resize(frame[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)


def _largest_face(detector: FaceDetector, frame: np.ndarray, size: int) -> np.ndarray | None:
    faces = detector.detect(frame)
    return crop_face(frame, faces[largest_face(faces)], size=size) if faces else None


def extract_clip_frames(clips: str | Path, out: str | Path, fps: float = 2.0, size: int = 112, detect: bool = True,
                        fold: int = 1, class_map: dict[str, str] | None = None,
                        frame_rate: float = DEFAULT_FRAME_RATE, last: int | None = None) -> ExtractedFrames:
    """The largest face of about ``fps`` frames a second of every labelled clip (the whole frame's centre square
    without ``detect``), ``size`` pixels square, written as class folders of JPEG images into ``out`` with a
    ``group_pattern`` that keeps each person's or clip's frames together; with ``last``, only the last ``last``
    faces of each clip (where clips run from a neutral onset to their expression's apex, as posed sequences do, the
    early frames do not show the label). An interrupted run resumes: clips whose frames were all written are
    skipped."""
    if fps <= 0 or size < 16 or frame_rate <= 0 or (last is not None and last < 1):
        raise AffectkitError("--fps and --frame-rate must be positive, --size at least 16 and --last at least 1.")
    out = Path(out)
    done_path = out / DONE_FILE
    if out.exists() and any(out.iterdir()) and not done_path.is_file():
        raise AffectkitError(f"{out} is not empty and was not written by clip-frames: give a new folder.")
    out.mkdir(parents=True, exist_ok=True)
    done = set(done_path.read_text().splitlines()) if done_path.is_file() else set()
    manifest = read_clips(clips, fold=fold, class_map=class_map)
    labelled = [s for s in manifest.samples if s.expression is not None]
    if not labelled:
        raise AffectkitError(f"{manifest.path}: no clip has an expression label; the frames go into class folders.")
    detector = FaceDetector() if detect else None
    rejected = list(manifest.rejected)
    todo = [s for s in labelled if s.id not in done]
    for sample in reporter().track(todo, total=len(todo), description="Writing frames"):
        path = sample.files["face"]
        try:
            frames, _ = read_window(path, sample.start, sample.end, fps, frame_rate)
        except Reject as r:
            rejected.append(Rejection(sample.id, str(path), r.kind, r.reason))
            continue
        crops = [_square(f, size) if detector is None else _largest_face(detector, f, size) for f in frames]
        crops = [c for c in crops if c is not None][-last if last else None:]
        if not crops:
            rejected.append(Rejection(sample.id, str(path), NO_FACE,
                                      f"{path.name}: the face detector found no face in any frame read"))
            continue
        folder = out / (sample.split or "") / CLASS_NAMES[sample.expression]
        folder.mkdir(parents=True, exist_ok=True)
        clip = _key(sample.id.removesuffix(path.suffix) if path.is_file() else sample.id)
        stem = f"{_key(sample.group)}__{clip}_" if sample.group else f"{clip}__"
        for k, crop in enumerate(crops):
            with atomic_path(folder / f"{stem}f{k:03d}.jpg") as tmp:
                tmp.write_bytes(cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))[1].tobytes())
        with open(done_path, "a") as f:
            f.write(sample.id + "\n")
    clips_written = len(set(done_path.read_text().splitlines())) if done_path.is_file() else 0
    images = sum(1 for _ in out.rglob("*.jpg"))
    if not images:
        raise AffectkitError(f"{manifest.path}: no frame with a face was found in any clip "
                             f"(first problem: {rejected[0].reason if rejected else 'none'}).")
    card = {"group_pattern": GROUP_PATTERN}
    header = (f"# Face frames of the clips in {manifest.path} (written by affectkit clip-frames). Each file name starts\n"
              "# with its person or clip: group_pattern keeps each one's frames on one side of every split.\n")
    (out / DATA_CONFIG_NAME).write_text(header + yaml.safe_dump(card))
    with atomic_path(out / "quarantine.csv") as tmp:
        quarantine_frame(rejected).to_csv(tmp, index=False)
    return ExtractedFrames(out, images, clips_written, rejected)
