"""Aff-Wild2 as the ABAW challenges distribute it: the aligned face of every frame of every video, and per-video
annotation files, one line per frame after a header::

    DATA/cropped_aligned/<video>/00001.jpg                                    frame 1 of the video
    DATA/<annotations>/EXPR_Classification_Challenge/Train_Set/<video>.txt      "Neutral,...,Other", a label a line
    DATA/<annotations>/EXPR_Classification_Challenge/Validation_Set/<video>.txt
    DATA/<annotations>/VA_Estimation_Challenge/Train_Set/<video>.txt            "valence,arousal", "v,a" a line

(``<annotations>`` is whatever the release calls it: ``Third ABAW Annotations``, ``6th_ABAW_Annotations``, ...).
The two challenges annotate different (overlapping) videos and split them differently, so ``affwild2_task`` says
whose frames and split a run reads. ``expression`` (the default): every frame with an expression label is a record,
with the frame's valence and arousal where the VA files give them. ``valence_arousal``: every frame with valence
and arousal is a record, with the frame's expression where the EXPR files give one, else none (``NO_EXPRESSION``:
the frame trains the valence/arousal heads only). Labels 0..6 are Aff-Wild2's (Neutral, Anger, Disgust, Fear,
Happiness, Sadness, Surprise), converted here; 7 (Other) has no affectkit class: quarantined as
``expression_other`` in the expression task, a frame without a class in the other; -1 (not annotated) and VA's -5
are no label. ABAW's test labels are not public, so the task's Validation_Set is the test split, as papers report,
and validation is carved from Train_Set; every frame is grouped by its video (one person, or ``_left`` / ``_right``
for each of two), so no person's frames fall on two sides. ``affwild2_frame_step`` keeps every n-th annotated frame
of a video: consecutive frames are near copies.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from affectkit.config import NO_EXPRESSION
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
NEEDS = f"{IMAGES}/ and an annotation folder holding {EXPRESSIONS}/ or {VALENCE_AROUSAL}/"
SPLITS = {"Train_Set": "train", "Validation_Set": "test"}
AFFWILD2_TO_AFFECTKIT = {0: 0, 1: 6, 2: 5, 3: 4, 4: 1, 5: 2, 6: 3}
OTHER, NOT_ANNOTATED, VA_NOT_ANNOTATED = 7, -1, -5.0
TASKS = ("expression", "valence_arousal")


def _images(path: Path) -> Path | None:
    folder = path / IMAGES
    if (folder / IMAGES).is_dir():  # an archive unpacked into a folder of its own name
        return folder / IMAGES
    return folder if folder.is_dir() else None


def _holds_annotations(folder: Path) -> bool:
    return (folder / EXPRESSIONS).is_dir() or (folder / VALENCE_AROUSAL).is_dir()


def _annotations(path: Path) -> Path | None:
    """The folder holding either challenge's folder: DATA itself or a folder up to two levels down."""
    if _holds_annotations(path):
        return path
    for child in sorted(d for d in path.iterdir() if d.is_dir() and d.name != IMAGES):
        for folder in (child, *sorted(d for d in child.iterdir() if d.is_dir())):
            if _holds_annotations(folder):
                return folder
    return None


def find(path: Path, options: ReadOptions) -> Path | None:
    return path if path.is_dir() and _images(path) is not None and _annotations(path) is not None else None


def _values(file: Path) -> list[tuple[int, str]]:
    """(frame number from 1, its line) of an annotation file, the header left out."""
    lines = numbered_lines(file)
    return [(number - 1, line) for number, line in lines[1:]]


def _annotation_file(folder: Path | None, video: str) -> Path | None:
    """The video's annotation file in either set of a challenge's ``folder`` (None: the challenge leaves it out)."""
    files = [] if folder is None else [f for f in (folder / s / f"{video}.txt" for s in SPLITS) if f.is_file()]
    return files[0] if files else None


def _parse_valence_arousal(line: str, source: str) -> tuple[float, float] | None:
    """A VA line's (valence, arousal); None where it says -5 (not annotated)."""
    try:
        valence, arousal = (float(v) for v in line.split(","))
    except ValueError:
        raise Reject("annotation_invalid", f"{source}: {line.strip()!r} is not two numbers valence,arousal") from None
    if VA_NOT_ANNOTATED in (valence, arousal):
        return None
    if not (-1 <= valence <= 1 and -1 <= arousal <= 1):
        raise Reject("annotation_out_of_range", f"{source}: valence/arousal {line.strip()!r} outside [-1, 1]")
    return valence, arousal


def _expression(raw: str, source: str, without_class_allowed: bool) -> int:
    """The affectkit class of an EXPR label; with ``without_class_allowed``, NO_EXPRESSION for -1 and Other."""
    try:
        label = int(raw.strip())
    except ValueError:
        raise Reject("expression_invalid", f"{source}: {raw.strip()!r} is not one of Aff-Wild2's labels") from None
    if label in (OTHER, NOT_ANNOTATED) and without_class_allowed:
        return NO_EXPRESSION
    if label == OTHER:
        raise Reject("expression_other", f"{source}: Other, which has no affectkit class")
    if label not in AFFWILD2_TO_AFFECTKIT:
        raise Reject("expression_out_of_range", f"{source}: label {label} is outside Aff-Wild2's -1..7")
    return AFFWILD2_TO_AFFECTKIT[label]


def _record(images: Path, video: str, frame: int, expression: int, split: str,
            va: tuple[float, float] | None, source: str) -> Record:
    file = images / video / f"{frame:05d}.jpg"
    try:
        info = inspect_image(file)
    except Reject as r:
        raise Reject(r.kind, f"{source}: {r.reason}") from None
    valence, arousal = va if va is not None else (math.nan, math.nan)
    return Record(f"{video}/{file.name}", file, expression, valence, arousal, width=info.width,
                  height=info.height, digest=info.digest, split=split, group=video)


def _is_sample(line: str, task: str) -> bool:
    """Whether a line of the task's own challenge is a frame to read: not -1 (EXPR) or -5 (VA), "not annotated"."""
    if task == "expression":
        return line.strip() != str(NOT_ANNOTATED)
    try:
        return _parse_valence_arousal(line, "") is not None
    except Reject:
        return True  # a damaged line is a sample to quarantine, with its reason


def _optional_va(line: str | None) -> tuple[float, float] | None:
    """The VA challenge's values of a frame read for its expression: a damaged line leaves the frame without VA."""
    if line is None:
        return None
    try:
        return _parse_valence_arousal(line, "")
    except Reject:
        return None


def _optional_expression(line: str | None) -> int:
    """The EXPR challenge's class of a frame read for its VA; none where it gives none (-1, Other, a damaged label)
    or does not annotate the frame."""
    if line is None:
        return NO_EXPRESSION
    try:
        return _expression(line, "", without_class_allowed=True)
    except Reject:
        return NO_EXPRESSION


def _folder(annotations: Path, challenge: str) -> Path | None:
    return annotations / challenge if (annotations / challenge).is_dir() else None


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    images, annotations = _images(root), _annotations(root)
    assert images is not None and annotations is not None  # find() said so
    step, task = options.affwild2_frame_step, options.affwild2_task
    if step < 1:
        raise AffectkitError(f"affwild2_frame_step must be at least 1, not {step}.")
    if task not in TASKS:
        raise AffectkitError(f"affwild2_task must be one of {', '.join(TASKS)}, not {task!r}.")
    # The task's own challenge gives the frames and the split; the other adds what it says of the same frames.
    own, other = ((EXPRESSIONS, VALENCE_AROUSAL) if task == "expression" else (VALENCE_AROUSAL, EXPRESSIONS))
    files = [(split, file) for folder, split in SPLITS.items()
             for file in sorted((annotations / own / folder).glob("*.txt"))]
    if not files:
        raise AffectkitError(f"{annotations / own} holds no Train_Set/ or Validation_Set/ annotation files "
                             f"(affwild2_task {task} reads that challenge's frames).")
    other_folder = _folder(annotations, other)

    def keys() -> Iterator[tuple[str, Path, int, str, str | None]]:
        """One video at a time, so only one video's annotations of the other challenge are held."""
        for split, file in files:
            other_file = _annotation_file(other_folder, file.stem)
            other_lines = dict(_values(other_file)) if other_file else {}
            annotated = [(frame, line) for frame, line in _values(file) if _is_sample(line, task)]
            for frame, line in annotated[::step]:
                yield split, file, frame, line, other_lines.get(frame)

    def build(key: tuple[str, Path, int, str, str | None]) -> Record | Rejection:
        split, file, frame, line, other_line = key
        source = f"{file.parent.name}/{file.name} frame {frame}"
        try:
            if task == "expression":
                expression, va = _expression(line, source, without_class_allowed=False), _optional_va(other_line)
            else:
                expression, va = _optional_expression(other_line), _parse_valence_arousal(line, source)
            return _record(images, file.stem, frame, expression, split, va, source)
        except Reject as r:
            return Rejection(f"{file.stem}/{frame:05d}.jpg", str(file), r.kind, r.reason)

    detail = (f"{'VA_Estimation_Challenge, ' if task != 'expression' else ''}Validation_Set as test"
              + (f"; every {step}th annotated frame" if step > 1 else ""))
    return collect(root, NAME, keys(), build, detail=detail, group_source="Aff-Wild2's videos")
