"""Oulu-CASIA NIR&VIS as released: each posed sequence runs from a neutral face to the apex of its expression::

    DATA/VL/Strong/P001/Anger/000.jpeg ... 018.jpeg      subject P001's anger, under visible light, strong lighting
    (NI/ for near-infrared; Dark/ and Weak/ for the other lighting; the folders may sit under OriginalImg/ or a
    folder of cropped faces)

Read as the literature reads it (VL/Strong: 80 subjects, 6 expressions, 480 sequences): the last three frames of
each sequence carry its expression, and with ``ckplus_neutral_onset`` its first frame is also a Neutral face (as
for CK+). Every face is grouped by its subject, so splits keep each person on one side. Given a folder above the
lighting conditions, every condition under it is read (the layout line names them), each face on its subject's side.
Read as class folders instead, a sequence's first, neutral frames would be taken for its expression.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from affectkit.data.layouts.ckplus import APEX_FRAMES
from affectkit.data.records import (
    DatasetIndex,
    ReadOptions,
    Record,
    Reject,
    Rejection,
    collect,
    frame_files,
    inspect_image,
)

NAME = "oulu_casia"
NEEDS = ("subject folders (P001/, P002/) holding Anger/, Disgust/, Fear/, Happiness/, Sadness/, Surprise/ sequences "
         "of numbered frames")
SUBJECT = re.compile(r"^P\d{3}$", re.IGNORECASE)
FRAME = re.compile(r"^\d+$")  # 000.jpeg: a sequence's frames are numbered
OULU_TO_AFFECTKIT = {"anger": 6, "disgust": 5, "fear": 4, "happiness": 1, "sadness": 2, "surprise": 3}
MAX_DEPTH = 4  # Oulu_CASIA_NIR_VIS/OriginalImg/VL/Strong/P001


def sequences(path: Path) -> list[Path]:
    """The expression folders of subject folders under ``path`` (up to ``MAX_DEPTH`` folders down), in order."""
    found = []
    for folder, subfolders, _ in os.walk(path):
        depth = len(Path(folder).relative_to(path).parts)
        if SUBJECT.match(Path(folder).name):
            found += [Path(folder) / d for d in sorted(subfolders) if d.lower() in OULU_TO_AFFECTKIT]
            subfolders[:] = []
        else:
            subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")) if depth < MAX_DEPTH else []
    return found


def _is_sequence(folder: Path) -> bool:
    frames = frame_files(folder)
    return len(frames) > APEX_FRAMES and all(FRAME.match(f.stem) for f in frames)


def find(path: Path, options: ReadOptions) -> Path | None:
    """DATA, where its subject folders hold expression folders of numbered frames (the first few checked)."""
    if not path.is_dir():
        return None
    found = sequences(path)
    return path if found and all(_is_sequence(s) for s in found[:6]) else None


def _record(frame: Path, root: Path, expression: int, subject: str) -> Record:
    info = inspect_image(frame)
    return Record(frame.relative_to(root).as_posix(), frame, expression, width=info.width, height=info.height,
                  digest=info.digest, group=subject)


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    found = sequences(root)

    def build(sequence: Path) -> list[Record | Rejection] | Rejection:
        """A sequence's apex frames, and its onset frame as Neutral where asked."""
        subject, source = sequence.parent.name.upper(), sequence.relative_to(root).as_posix()
        expression = OULU_TO_AFFECTKIT[sequence.name.lower()]
        frames = frame_files(sequence)
        if len(frames) <= APEX_FRAMES:
            return Rejection(source, str(sequence), "sequence_short", f"{source} holds {len(frames)} frame(s); a "
                                                                      f"sequence's apex is its last {APEX_FRAMES}")
        chosen = [(f, expression) for f in frames[-APEX_FRAMES:]] + ([(frames[0], 0)] if options.ckplus_neutral_onset
                                                                     else [])
        faces: list[Record | Rejection] = []
        for frame, label in chosen:
            try:
                faces.append(_record(frame, root, label, subject))
            except Reject as r:
                faces.append(Rejection(frame.relative_to(root).as_posix(), str(frame), r.kind, r.reason))
        return faces

    conditions = sorted({s.parent.parent.relative_to(root).as_posix() for s in found} - {"."})
    detail = (f"last {APEX_FRAMES} frames" + (" + onset as Neutral" if options.ckplus_neutral_onset else "")
              + f" of {len(found)} sequences" + (f"; conditions {', '.join(conditions)}" if conditions else ""))
    return collect(root, NAME, found, build, detail=detail, group_source="Oulu-CASIA's subject folders")
