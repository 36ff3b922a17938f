"""CK+ (the Extended Cohn-Kanade set) as released: each posed sequence runs from a neutral face to the apex of
its expression::

    DATA/cohn-kanade-images/S005/001/S005_001_00000011.png      the frames of subject S005's sequence 001
    DATA/Emotion/S005/001/S005_001_00000011_emotion.txt          "3.0000000e+00": the sequence's label (327 of 593)
    DATA/Landmarks/S005/001/S005_001_00000011_landmarks.txt      68 "x y" lines per frame (optional)

(the folders may sit one level down, as the archives unpack: ``extended-cohn-kanade-images/cohn-kanade-images/``).
Read as the literature reads it: the last three frames of every labelled sequence carry its label (327 sequences,
981 faces, seven classes: CK+ labels no sequence neutral), and with ``ckplus_neutral_onset`` each labelled
sequence's first frame is also a Neutral face (eight classes). Labels are CK+'s 1 anger, 2 contempt, 3 disgust,
4 fear, 5 happy, 6 sadness, 7 surprise (0 neutral). Every face is grouped by its subject, so splits keep each
person on one side; where a frame has its landmarks, the face is cropped by them (plus a margin) and they are kept,
else the whole frame is read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from affectkit.data.records import (
    DatasetIndex,
    ImageInfo,
    ReadOptions,
    Record,
    Reject,
    Rejection,
    collect,
    frame_files,
    inspect_image,
)

NAME = "ckplus"
IMAGES, EMOTIONS, LANDMARKS = "cohn-kanade-images", "Emotion", "Landmarks"
NEEDS = f"{IMAGES}/ and {EMOTIONS}/ (CK+'s sequences and their labels)"
CKPLUS_TO_AFFECTKIT = {0: 0, 1: 6, 2: 7, 3: 5, 4: 4, 5: 1, 6: 2, 7: 3}
APEX_FRAMES = 3
CROP_MARGIN = 0.25  # of the landmarks' box on each side: the 68 points stop at the brows, so the forehead is added


def _folder(path: Path, name: str) -> Path | None:
    """``path/name``, or ``path/<any>/name`` (an archive unpacked into a folder of its own)."""
    if (path / name).is_dir():
        return path / name
    return next((d / name for d in sorted(path.iterdir()) if d.is_dir() and (d / name).is_dir()), None)


def sequence_folders(path: Path) -> tuple[Path, Path] | None:
    """CK+'s folders of sequences and of their labels under ``path``, or None where it holds no CK+."""
    if not path.is_dir():
        return None
    images, emotions = _folder(path, IMAGES), _folder(path, EMOTIONS)
    return None if images is None or emotions is None else (images, emotions)


def labelled_sequences(emotions: Path) -> list[Path]:
    """The label file of every labelled sequence (``Emotion/S005/001/S005_001_00000011_emotion.txt``), in order."""
    return sorted(emotions.glob("*/*/*_emotion.txt"))


def find(path: Path, options: ReadOptions) -> Path | None:
    return path if sequence_folders(path) is not None else None


def sequence_label(file: Path) -> int:
    """The affectkit class of a CK+ label file; raises Reject for one that holds no label 0..7."""
    text = file.read_text(errors="replace").strip()
    try:
        value = float(text)
    except ValueError:
        raise Reject("label_invalid", f"{file.name} holds {text[:40]!r}, not CK+'s label 0..7") from None
    if not value.is_integer() or int(value) not in CKPLUS_TO_AFFECTKIT:
        raise Reject("expression_out_of_range", f"{file.name}: label {text} is outside CK+'s 0..7")
    return CKPLUS_TO_AFFECTKIT[int(value)]


def _landmarks(file: Path) -> np.ndarray:
    try:
        points = np.loadtxt(file, dtype=np.float32, ndmin=2)
    except ValueError:
        raise Reject("landmarks_invalid", f"{file.name} holds a value that is not a number") from None
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise Reject("landmarks_invalid", f"{file.name} holds {points.size} values; 68 points need 136")
    return points


def landmark_crop(points: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """A square around 68 landmarks, widened by CROP_MARGIN on each side, clipped to the image."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * CROP_MARGIN)  # square, centred on the points' box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    box = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
    return max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3])


def landmark_record(record_id: str, image: Path, info: ImageInfo, points: np.ndarray, expression: int,
                    **fields) -> Record:
    """The record of a face cropped from ``image`` by its 68 ``points`` (kept, in the crop's pixels)."""
    crop = landmark_crop(points, info.width, info.height)
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise Reject("landmarks_invalid", f"{image.name}: its landmarks lie outside the {info.width}x{info.height} "
                                          "image")
    digest = hashlib.blake2b(f"{info.digest}|{crop}".encode(), digest_size=10).hexdigest()
    return Record(record_id, image, expression, landmarks=points - np.array(crop[:2], dtype=np.float32),
                  width=crop[2] - crop[0], height=crop[3] - crop[1], digest=digest, crop=crop, **fields)


def _record(frame: Path, images: Path, landmarks: Path | None, expression: int, subject: str) -> Record:
    info = inspect_image(frame)
    rel = frame.relative_to(images).as_posix()
    marks = None if landmarks is None else landmarks / Path(rel).parent / f"{frame.stem}_landmarks.txt"
    if marks is None or not marks.is_file():
        return Record(rel, frame, expression, width=info.width, height=info.height, digest=info.digest, group=subject)
    return landmark_record(rel, frame, info, _landmarks(marks), expression, group=subject)


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    folders = sequence_folders(root)
    assert folders is not None  # find() said so
    images, emotions = folders
    landmarks = _folder(root, LANDMARKS)
    labels = labelled_sequences(emotions)

    def build(label_file: Path) -> list[Record | Rejection] | Rejection:
        """A labelled sequence's apex frames, and its onset frame as Neutral where asked (rejected on its own)."""
        subject, sequence = label_file.parent.parent.name, label_file.parent.name
        source = f"{EMOTIONS}/{subject}/{sequence}"
        try:
            expression = sequence_label(label_file)
            frames = frame_files(images / subject / sequence) if (images / subject / sequence).is_dir() else []
            if not frames:
                raise Reject("image_missing", f"{source}: no frames in {IMAGES}/{subject}/{sequence}")
            found: list[Record | Rejection] = [_record(f, images, landmarks, expression, subject)
                                               for f in frames[-APEX_FRAMES:]]
        except Reject as r:
            return Rejection(f"{subject}/{sequence}", str(label_file), r.kind, f"{source}: {r.reason}")
        if options.ckplus_neutral_onset:
            try:
                found.append(_record(frames[0], images, landmarks, 0, subject))
            except Reject as r:
                found.append(Rejection(f"{subject}/{sequence} onset", str(label_file), r.kind, f"{source}: {r.reason}"))
        return found

    return collect(root, NAME, labels, build, detail=_detail(landmarks, options),
                   group_source="CK+'s subject folders")


def _detail(landmarks: Path | None, options: ReadOptions) -> str:
    frames = f"last {APEX_FRAMES} frames" + (" + onset as Neutral" if options.ckplus_neutral_onset else "")
    return f"{frames}; " + ("faces cropped by their landmarks" if landmarks else f"whole frames: no {LANDMARKS}/")
