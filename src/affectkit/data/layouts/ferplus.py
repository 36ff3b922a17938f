"""FER+ as its repository's ``generate_training_data.py`` leaves it: FER2013's faces as PNG files in three folders,
each with a header-less ``label.csv`` of the ten annotators' votes::

    DATA/FER2013Train/label.csv     fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0
    DATA/FER2013Train/fer0000000.png
    DATA/FER2013Valid/...           (DATA may also be the repository, with these folders in data/)
    DATA/FER2013Test/...

The votes are FER+'s columns (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, not a
face): the class is FER+'s majority and the record carries the vote distribution, as for ``fer2013new.csv`` beside
``fer2013.csv``; a face without a majority is quarantined as ``ferplus_no_majority``. The folders are the split.
Every face box is the whole 48x48 image, so the box column is not read.
"""

from __future__ import annotations

import csv
from pathlib import Path

from affectkit.data.layouts.fer2013 import FERPLUS_COLUMNS, NO_MAJORITY, ferplus_votes
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

NAME = "ferplus"
FOLDERS = {"FER2013Train": "train", "FER2013Valid": "val", "FER2013Test": "test"}
LABEL_FILE = "label.csv"
NEEDS = "FER2013Train/, FER2013Valid/, FER2013Test/ folders of PNG faces, each with FER+'s label.csv of votes"


def find(path: Path, options: ReadOptions) -> Path | None:
    """DATA, or the FERPlus repository's data/ folder, holding at least one of the three folders with its label.csv."""
    for root in (path, path / "data"):
        if root.is_dir() and any((root / folder / LABEL_FILE).is_file() for folder in FOLDERS):
            return root
    return None


def _record(folder: Path, line_no: int, line: str) -> Record:
    source = f"{folder.name}/{LABEL_FILE} line {line_no}"
    fields = next(csv.reader([line]))
    if len(fields) != 2 + len(FERPLUS_COLUMNS):
        raise Reject("line_invalid", f"{source}: {len(fields)} fields; FER+'s lines hold the image, its face box and "
                                     f"{len(FERPLUS_COLUMNS)} vote counts")
    try:
        votes = [float(v) for v in fields[2:]]
    except ValueError:
        raise Reject("votes_invalid", f"{source}: a vote count is not a number") from None
    label, distribution = ferplus_votes(votes)
    if label == NO_MAJORITY:
        raise Reject("ferplus_no_majority", f"{source}: FER+'s voters gave no expression a majority (or called the "
                                            "face unknown, or not a face)")
    image = folder / fields[0].strip()
    try:
        info = inspect_image(image)
    except Reject as r:
        raise Reject(r.kind, f"{source}: {r.reason}") from None
    return Record(f"{folder.name}/{fields[0].strip()}", image, label, width=info.width, height=info.height,
                  digest=info.digest, split=FOLDERS[folder.name], expression_distribution=distribution)


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    folders = [root / name for name in FOLDERS if (root / name / LABEL_FILE).is_file()]
    keys = [(folder, line_no, line) for folder in folders for line_no, line in numbered_lines(folder / LABEL_FILE)]

    def build(key: tuple[Path, int, str]) -> Record | Rejection:
        folder, line_no, line = key
        try:
            return _record(folder, line_no, line)
        except Reject as r:
            name = line.split(",", 1)[0].strip()
            return Rejection(f"{folder.name}/{name}", f"{folder / LABEL_FILE}:{line_no}", r.kind, r.reason)

    detail = (f"{', '.join(f.name + '/' for f in folders)} with FER+'s votes, by majority; vote distributions for "
              "label_distribution")
    return collect(root, NAME, keys, build, detail=detail)
