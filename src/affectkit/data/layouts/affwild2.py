"""Aff-Wild2 as the ABAW challenges distribute it: the aligned face of every frame of every video, and per-video
annotation files, one line per frame after a header::

    DATA/cropped_aligned/<video>/00001.jpg                                    frame 1 of the video
    DATA/<annotations>/EXPR_Classification_Challenge/Train_Set/<video>.txt      "Neutral,...,Other", a label a line
    DATA/<annotations>/EXPR_Classification_Challenge/Validation_Set/<video>.txt
    DATA/<annotations>/VA_Estimation_Challenge/Train_Set/<video>.txt            "valence,arousal", "v,a" a line

or, for the multi-task challenge's s-Aff-Wild2, one file per set, a frame a line::

    DATA/<annotations>/training_set_annotations.txt     "image,valence,arousal,expression,AU1,...", then
    DATA/<annotations>/validation_set_annotations.txt   "<video>/00001.jpg,v,a,label,au,..." (any suffix: _22, _23)

(``<annotations>`` is whatever the release calls it: ``Third ABAW Annotations``, ``6th_ABAW_Annotations``, ...).
The challenges annotate different (overlapping) videos and split them differently, so ``affwild2_task`` says whose
frames and split a run reads. ``expression``: every frame with an expression label is a record, with the frame's
valence and arousal where the VA files give them. ``valence_arousal``: every frame with valence and arousal is a
record, with the frame's expression where the EXPR files give one, else none (``NO_EXPRESSION``: the frame trains
the valence/arousal heads only). ``multi_task``: every frame of the multi-task files with valence/arousal or an
expression (or both). ``auto`` (the default): the expression challenge where its folder is there, else the
multi-task files, else the VA challenge. Labels 0..6 are Aff-Wild2's (Neutral, Anger, Disgust, Fear, Happiness,
Sadness, Surprise), converted here; 7 (Other) has no affectkit class: a frame with valence/arousal is then a frame
without a class, one without is quarantined as ``expression_other``; -1 (not annotated) and VA's -5 are no label
(action units are not read). ABAW's test labels are not public, so the task's Validation_Set is the test split, as
papers report, and validation is carved from Train_Set; every frame is grouped by its video (one person, or
``_left`` / ``_right`` for each of two), so no person's frames fall on two sides. ``affwild2_frame_step`` keeps
every n-th annotated frame of a video: consecutive frames are near copies.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
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
MULTI_TASK_FILES = {"training_set_annotations": "train", "validation_set_annotations": "test"}
NEEDS = (f"{IMAGES}/ and an annotation folder holding {EXPRESSIONS}/ or {VALENCE_AROUSAL}/, or the multi-task "
         "challenge's training_set_annotations.txt")
SPLITS = {"Train_Set": "train", "Validation_Set": "test"}
AFFWILD2_TO_AFFECTKIT = {0: 0, 1: 6, 2: 5, 3: 4, 4: 1, 5: 2, 6: 3}
OTHER, NOT_ANNOTATED, VA_NOT_ANNOTATED = 7, -1, -5.0
TASKS = ("auto", "expression", "valence_arousal", "multi_task")


def _images(path: Path) -> Path | None:
    folder = path / IMAGES
    if (folder / IMAGES).is_dir():  # an archive unpacked into a folder of its own name
        return folder / IMAGES
    return folder if folder.is_dir() else None


def _holds_annotations(folder: Path) -> bool:
    return (folder / EXPRESSIONS).is_dir() or (folder / VALENCE_AROUSAL).is_dir()


def _holds_multi_task(folder: Path) -> bool:
    return any(folder.glob(f"{next(iter(MULTI_TASK_FILES))}*.txt"))


def _search(path: Path, holds: Callable[[Path], bool]) -> Path | None:
    """The folder ``holds`` accepts: DATA itself or a folder up to two levels down (not the images)."""
    if holds(path):
        return path
    for child in sorted(d for d in path.iterdir() if d.is_dir() and d.name != IMAGES):
        for folder in (child, *sorted(d for d in child.iterdir() if d.is_dir())):
            if holds(folder):
                return folder
    return None


def _annotations(path: Path) -> Path | None:
    return _search(path, _holds_annotations)


def find(path: Path, options: ReadOptions) -> Path | None:
    if not path.is_dir() or _images(path) is None:
        return None
    return path if _annotations(path) is not None or _search(path, _holds_multi_task) is not None else None


def _values(file: Path) -> list[tuple[int, str]]:
    """(frame number from 1, its line) of an annotation file, the header left out."""
    lines = numbered_lines(file)
    return [(number - 1, line) for number, line in lines[1:]]


def _annotation_file(folder: Path | None, video: str) -> Path | None:
    """The video's annotation file in either set of a challenge's ``folder`` (None: the challenge leaves it out)."""
    files = [] if folder is None else [f for f in (folder / s / f"{video}.txt" for s in SPLITS) if f.is_file()]
    return files[0] if files else None


def _parse_valence_arousal(cells: list[str], source: str) -> tuple[float, float] | None:
    """(valence, arousal) from the two cells of a VA line (or of a multi-task line); None where they say -5 (not
    annotated)."""
    line = ",".join(cells)
    try:
        valence, arousal = (float(v) for v in cells)
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


def _record(images: Path, image: str, expression: int, split: str, va: tuple[float, float] | None,
            source: str) -> Record:
    """The record of ``images/<video>/<frame>.jpg`` (``image``: ``<video>/<frame>.jpg``, also its id)."""
    file = images / image
    try:
        info = inspect_image(file)
    except Reject as r:
        raise Reject(r.kind, f"{source}: {r.reason}") from None
    valence, arousal = va if va is not None else (math.nan, math.nan)
    return Record(image, file, expression, valence, arousal, width=info.width, height=info.height,
                  digest=info.digest, split=split, group=image.rsplit("/", 1)[0])


def _is_sample(line: str, task: str) -> bool:
    """Whether a line of the task's own challenge is a frame to read: not -1 (EXPR) or -5 (VA), "not annotated"."""
    if task == "expression":
        return line.strip() != str(NOT_ANNOTATED)
    try:
        return _parse_valence_arousal(line.split(","), "") is not None
    except Reject:
        return True  # a damaged line is a sample to quarantine, with its reason


def _optional_va(line: str | None) -> tuple[float, float] | None:
    """The VA challenge's values of a frame read for its expression: a damaged line leaves the frame without VA."""
    if line is None:
        return None
    try:
        return _parse_valence_arousal(line.split(","), "")
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


def _task(annotations: Path | None, multi_task: Path | None, task: str) -> str:
    """The task ``auto`` stands for: the expression challenge, else the multi-task files, else the VA challenge."""
    if task not in TASKS:
        raise AffectkitError(f"affwild2_task must be one of {', '.join(TASKS)}, not {task!r}.")
    if task != "auto":
        return task
    if annotations is not None and (annotations / EXPRESSIONS).is_dir():
        return "expression"
    return "multi_task" if multi_task is not None else "valence_arousal"


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    images, annotations, multi_task = _images(root), _annotations(root), _search(root, _holds_multi_task)
    assert images is not None  # find() said so
    step = options.affwild2_frame_step
    if step < 1:
        raise AffectkitError(f"affwild2_frame_step must be at least 1, not {step}.")
    task = _task(annotations, multi_task, options.affwild2_task)
    if task == "multi_task":
        if multi_task is None:
            raise AffectkitError(f"{root} holds no training_set_annotations*.txt (affwild2_task multi_task reads the "
                                 "multi-task challenge's files).")
        return _read_multi_task(root, images, multi_task, step)
    if annotations is None:
        raise AffectkitError(f"{root} holds no {EXPRESSIONS}/ or {VALENCE_AROUSAL}/ (affwild2_task {task}).")
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
                va = _optional_va(other_line)  # Other with valence/arousal: a face without a class
                expression = _expression(line, source, without_class_allowed=va is not None)
            else:
                expression, va = _optional_expression(other_line), _parse_valence_arousal(line.split(","), source)
            return _record(images, f"{file.stem}/{frame:05d}.jpg", expression, split, va, source)
        except Reject as r:
            return Rejection(f"{file.stem}/{frame:05d}.jpg", str(file), r.kind, r.reason)

    detail = (f"{'VA_Estimation_Challenge, ' if task != 'expression' else ''}Validation_Set as test"
              + (f"; every {step}th annotated frame" if step > 1 else ""))
    return collect(root, NAME, keys(), build, detail=detail, group_source="Aff-Wild2's videos")


def _multi_task_files(folder: Path) -> list[tuple[str, Path]]:
    """(split, file) of the multi-task challenge's training and validation files in ``folder``."""
    files = []
    for stem, split in MULTI_TASK_FILES.items():
        matches = sorted(folder.glob(f"{stem}*.txt"))
        if len(matches) > 1:
            names = ", ".join(m.name for m in matches)
            raise AffectkitError(f"{folder} holds {len(matches)} {stem}*.txt files ({names}): keep the one to read.")
        files += [(split, match) for match in matches]
    return files


def _is_multi_task_sample(cells: list[str]) -> bool:
    """A frame annotated for valence/arousal or an expression (not for action units alone); a damaged line is a
    sample to quarantine, with its reason."""
    try:
        return not (VA_NOT_ANNOTATED in (float(cells[1]), float(cells[2])) and int(cells[3]) == NOT_ANNOTATED)
    except (ValueError, IndexError):
        return True


def _without_header(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The lines after the header "image,valence,arousal,expression,..." (a file without one loses no frame)."""
    if not lines:
        return lines
    try:
        float(lines[0][1].split(",")[1])
        return lines  # the first line is a frame's
    except (ValueError, IndexError):
        return lines[1:]


def _read_multi_task(root: Path, images: Path, folder: Path, step: int) -> DatasetIndex:
    files = _multi_task_files(folder)

    def keys() -> Iterator[tuple[str, Path, int, list[str]]]:
        for split, file in files:
            by_video: dict[str, list[tuple[int, list[str]]]] = {}
            for number, line in _without_header(numbered_lines(file)):
                cells = [cell.strip() for cell in line.split(",")]
                if _is_multi_task_sample(cells):
                    by_video.setdefault(cells[0].rsplit("/", 1)[0], []).append((number, cells))
            for frames in by_video.values():
                for number, cells in frames[::step]:
                    yield split, file, number, cells

    def build(key: tuple[str, Path, int, list[str]]) -> Record | Rejection:
        split, file, number, cells = key
        source = f"{file.name} line {number}"
        try:
            if len(cells) < 4:
                raise Reject("annotation_invalid", f"{source}: {','.join(cells)!r} is not image,valence,arousal,"
                                                   "expression,...")
            va = _parse_valence_arousal(cells[1:3], source)
            expression = _expression(cells[3], source, without_class_allowed=va is not None)
            return _record(images, cells[0], expression, split, va, source)
        except Reject as r:
            return Rejection(cells[0], str(images / cells[0]), r.kind, r.reason)

    detail = (f"multi-task files {', '.join(f.name for _, f in files)}; validation set as test"
              + (f"; every {step}th annotated frame" if step > 1 else ""))
    return collect(root, NAME, keys(), build, detail=detail, group_source="Aff-Wild2's videos")
