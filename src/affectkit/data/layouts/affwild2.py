"""Aff-Wild2 as the ABAW challenges distribute it: the aligned face of every frame of every video, and per-video
annotation files, one line per frame after a header::

    DATA/cropped_aligned/<video>/00001.jpg                                    frame 1 of the video
    DATA/<annotations>/EXPR_Classification_Challenge/Train_Set/<video>.txt      "Neutral,...,Other", a label a line
    DATA/<annotations>/EXPR_Classification_Challenge/Validation_Set/<video>.txt
    DATA/<annotations>/VA_Estimation_Challenge/Train_Set/<video>.txt            "valence,arousal", "v,a" a line

(``<annotations>`` is whatever the release calls it: ``Third ABAW Annotations``, ``6th_ABAW_Annotations``, ...).
Every frame with an expression label is a record, with the frame's valence and arousal where the VA files give
them. Labels 0..6 are Aff-Wild2's (Neutral, Anger, Disgust, Fear, Happiness, Sadness, Surprise), converted here; 7
(Other) has no affectkit class and is quarantined as ``expression_other``; -1 (not annotated) and VA's -5 are no
label. ABAW's test labels are not public, so its Validation_Set is the test split, as papers report, and
validation is carved from Train_Set; every frame is grouped by its video (one person, or ``_left`` / ``_right`` for
each of two), so no person's frames fall on two sides. ``affwild2_frame_step`` keeps every n-th annotated frame of a
video: consecutive frames are near copies.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from affectkit.data.records import (
    DatasetIndex,
    ReadOptions,
    Record,
    Reject,
    Rejection,
    collect,
    inspect_image,
    numbered_lines,
)
from affectkit.errors import AffectkitError

NAME = "affwild2"
IMAGES = "cropped_aligned"
EXPRESSIONS, VALENCE_AROUSAL = "EXPR_Classification_Challenge", "VA_Estimation_Challenge"
NEEDS = f"{IMAGES}/ and an annotation folder holding {EXPRESSIONS}/"
SPLITS = {"Train_Set": "train", "Validation_Set": "test"}
AFFWILD2_TO_AFFECTKIT = {0: 0, 1: 6, 2: 5, 3: 4, 4: 1, 5: 2, 6: 3}
OTHER, NOT_ANNOTATED, VA_NOT_ANNOTATED = 7, -1, -5.0


def _images(path: Path) -> Path | None:
    folder = path / IMAGES
    if (folder / IMAGES).is_dir():  # an archive unpacked into a folder of its own name
        return folder / IMAGES
    return folder if folder.is_dir() else None


def _annotations(path: Path) -> Path | None:
    """The folder holding EXPR_Classification_Challenge/: DATA itself or a folder up to two levels down."""
    if (path / EXPRESSIONS).is_dir():
        return path
    for child in sorted(d for d in path.iterdir() if d.is_dir() and d.name != IMAGES):
        for folder in (child, *sorted(d for d in child.iterdir() if d.is_dir())):
            if (folder / EXPRESSIONS).is_dir():
                return folder
    return None


def find(path: Path, options: ReadOptions) -> Path | None:
    return path if path.is_dir() and _images(path) is not None and _annotations(path) is not None else None


def _values(file: Path) -> list[tuple[int, str]]:
    """(frame number from 1, its line) of an annotation file, the header left out."""
    lines = numbered_lines(file)
    return [(number - 1, line) for number, line in lines[1:]]


def _valence_arousal(folder: Path | None, video: str) -> dict[int, tuple[float, float]]:
    """frame -> (valence, arousal) of the video's annotated frames, from its VA file in either set (none: {})."""
    files = [] if folder is None else [f for f in (folder / s / f"{video}.txt" for s in SPLITS) if f.is_file()]
    out: dict[int, tuple[float, float]] = {}
    for frame, line in _values(files[0]) if files else []:
        try:
            valence, arousal = (float(v) for v in line.split(","))
        except ValueError:
            continue  # a damaged VA line leaves the frame without VA; its expression is still read
        if VA_NOT_ANNOTATED not in (valence, arousal) and -1 <= valence <= 1 and -1 <= arousal <= 1:
            out[frame] = (valence, arousal)
    return out


def _record(images: Path, video: str, frame: int, raw: str, split: str,
            va: tuple[float, float] | None, source: str) -> Record:
    try:
        label = int(raw.strip())
    except ValueError:
        raise Reject("expression_invalid", f"{source}: {raw.strip()!r} is not one of Aff-Wild2's labels") from None
    if label == OTHER:
        raise Reject("expression_other", f"{source}: Other, which has no affectkit class")
    if label not in AFFWILD2_TO_AFFECTKIT:
        raise Reject("expression_out_of_range", f"{source}: label {label} is outside Aff-Wild2's -1..7")
    file = images / video / f"{frame:05d}.jpg"
    try:
        info = inspect_image(file)
    except Reject as r:
        raise Reject(r.kind, f"{source}: {r.reason}") from None
    valence, arousal = va if va is not None else (math.nan, math.nan)
    return Record(f"{video}/{file.name}", file, AFFWILD2_TO_AFFECTKIT[label], valence, arousal, width=info.width,
                  height=info.height, digest=info.digest, split=split, group=video)


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    images, annotations = _images(root), _annotations(root)
    assert images is not None and annotations is not None  # find() said so
    step = options.affwild2_frame_step
    if step < 1:
        raise AffectkitError(f"affwild2_frame_step must be at least 1, not {step}.")
    va_folder = annotations / VALENCE_AROUSAL if (annotations / VALENCE_AROUSAL).is_dir() else None
    files = [(split, file) for folder, split in SPLITS.items()
             for file in sorted((annotations / EXPRESSIONS / folder).glob("*.txt"))]
    if not files:
        raise AffectkitError(f"{annotations / EXPRESSIONS} holds no Train_Set/ or Validation_Set/ annotation files.")

    def keys() -> Iterator[tuple[str, Path, int, str, tuple[float, float] | None]]:
        """One video at a time, so only one video's valence and arousal are held."""
        for split, file in files:
            va = _valence_arousal(va_folder, file.stem)
            annotated = [(frame, line) for frame, line in _values(file) if line.strip() != str(NOT_ANNOTATED)]
            for frame, line in annotated[::step]:
                yield split, file, frame, line, va.get(frame)

    def build(key: tuple[str, Path, int, str, tuple[float, float] | None]) -> Record | Rejection:
        split, file, frame, line, va = key
        source = f"{file.parent.name}/{file.name} frame {frame}"
        try:
            return _record(images, file.stem, frame, line, split, va, source)
        except Reject as r:
            return Rejection(f"{file.stem}/{frame:05d}.jpg", str(file), r.kind, r.reason)

    detail = "Validation_Set as test" + (f"; every {step}th annotated frame" if step > 1 else "")
    return collect(root, NAME, keys(), build, detail=detail, group_source="Aff-Wild2's videos")
