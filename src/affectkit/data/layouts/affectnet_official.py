"""AffectNet's official release: ``training.csv`` / ``validation.csv`` plus the images::

    DATA/training.csv  DATA/validation.csv
        subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression, valence, arousal
    DATA/Manually_Annotated_Images/<subDirectory_filePath>   (the folder is found, not assumed)

AffectNet's labels are affectkit's (8/9/10 and valence/arousal -2 are rejected as in the .npy layout). Each face is
cropped by its box plus a margin, clipped to the image, and its landmarks moved into the crop. ``validation.csv`` is
the test split, as in the literature, and validation is carved from training. The CSVs (about 290k training rows)
are streamed, so reading them stays flat in memory.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from affectkit.data.records import (
    DatasetIndex,
    ReadOptions,
    Record,
    Reject,
    Rejection,
    affectnet_expression,
    collect,
    csv_header,
    inspect_image,
    parse_valence_arousal,
    require_some_label,
)
from affectkit.errors import AffectkitError

NAME = "affectnet_official"
FILES = (("training.csv", "train"), ("validation.csv", "test"))
NEEDS = ("training.csv and/or validation.csv with columns subDirectory_filePath, face_x, face_y, face_width, "
         "face_height, expression[, facial_landmarks, valence, arousal] and the images under a folder such as "
         "Manually_Annotated_Images/")
REQUIRED = ("subdirectory_filepath", "face_x", "face_y", "face_width", "face_height", "expression")
CROP_MARGIN = 0.1  # of the box's width/height on each side: AffectNet's boxes cut through the chin and brow
MIN_INSIDE = 0.5  # a box with less than this share of its area inside the image is no face crop


def _is_official(path: Path) -> bool:
    return path.is_file() and "subdirectory_filepath" in csv_header(path)


def find(path: Path, options: ReadOptions) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() == ".csv" and _is_official(path) else None
    return path if any(_is_official(path / name) for name, _ in FILES) else None


def _tables(source: Path) -> list[tuple[Path, str | None]]:
    """The CSVs to read with the split each gives; splits only when both files are there."""
    if source.is_file():
        return [(source, None)]
    present = [(source / name, split) for name, split in FILES if _is_official(source / name)]
    return present if len(present) == len(FILES) else [(p, None) for p, _ in present]


def _rows(csv_path: Path) -> Iterator[tuple[int, list[str]]]:
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader, None)
        for row in reader:
            if row:
                yield reader.line_num, row


def _image_root(folder: Path, csv_path: Path, column: int) -> Path:
    """The folder the CSV's relative paths start from: DATA, or the (sub)folder holding most of the first rows."""
    sample = []
    for _, row in _rows(csv_path):
        if len(row) > column:
            sample.append(row[column].strip())
        if len(sample) == 20:
            break
    subfolders = [d for d in sorted(folder.iterdir()) if d.is_dir()]
    candidates = [folder, *subfolders,
                  *(s for d in subfolders for s in sorted(d.iterdir()) if s.is_dir() and "image" in s.name.lower())]
    hits = {c: sum((c / rel).is_file() for rel in sample) for c in candidates}
    best = max(candidates, key=hits.get)
    if not hits[best]:
        example = sample[0] if sample else "?"
        raise AffectkitError(
            f"{csv_path} names images such as {example}, but none of the first {len(sample)} is under {folder} or "
            "its subfolders (for example Manually_Annotated_Images/): put the images beside the CSV files."
        )
    return best


def _box(row: list[str], cols: dict[str, int], source: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(round(float(row[cols[k]]))) for k in ("face_x", "face_y", "face_width", "face_height"))
    except ValueError:
        raise Reject("box_invalid", f"{source}: the face box holds a value that is not a number") from None
    if w <= 0 or h <= 0:
        raise Reject("box_invalid", f"{source}: the face box is {w}x{h}, not a positive size")
    return x, y, w, h


def face_crop(box: tuple[int, int, int, int], width: int, height: int, source: str) -> tuple[int, int, int, int]:
    """The (x0, y0, x1, y1) crop of a face box (x, y, w, h) plus its margin, clipped to the image; a box mostly
    outside the image is rejected."""
    x, y, w, h = box
    inside = max(0, min(x + w, width) - max(x, 0)) * max(0, min(y + h, height) - max(y, 0))
    if inside < MIN_INSIDE * w * h:
        raise Reject("box_outside_image",
                     f"{source}: the face box at ({x}, {y}) of {w}x{h} lies outside the {width}x{height} image")
    mx, my = round(w * CROP_MARGIN), round(h * CROP_MARGIN)
    return max(0, x - mx), max(0, y - my), min(width, x + w + mx), min(height, y + h + my)


def _landmarks(text: str, source: str) -> np.ndarray | None:
    text = text.strip()
    if not text:
        return None
    try:
        values = np.array([float(v) for v in text.split(";") if v.strip()], dtype=np.float32)
    except ValueError:
        raise Reject("landmarks_invalid", f"{source}: facial_landmarks holds a value that is not a number") from None
    if values.size != 136 or not np.isfinite(values).all():
        raise Reject("landmarks_invalid", f"{source}: facial_landmarks holds {values.size} finite values; 68 points need 136")
    return values.reshape(68, 2)


def _record(images: Path, csv_name: str, cols: dict[str, int], split: str | None, line_no: int,
            row: list[str], options: ReadOptions) -> Record:
    source = f"{csv_name} line {line_no}"
    if len(row) < len(cols):
        raise Reject("row_invalid", f"{source} has {len(row)} field(s); the header names {len(cols)}")
    rel = row[cols["subdirectory_filepath"]].strip()
    # Label and box first: the many 'none'/'uncertain'/'no face' rows are rejected without opening their image.
    label = affectnet_expression(row[cols["expression"]], source, options)
    valence, arousal = parse_valence_arousal(row[cols["valence"]] if "valence" in cols else "",
                                             row[cols["arousal"]] if "arousal" in cols else "", source)
    require_some_label(label, valence, source)
    box = _box(row, cols, source)
    landmarks = _landmarks(row[cols["facial_landmarks"]], source) if "facial_landmarks" in cols else None
    try:
        info = inspect_image(images / rel)
    except Reject as r:
        raise Reject(r.kind, f"{source}: {r.reason}") from None
    crop = face_crop(box, info.width, info.height, source)
    if landmarks is not None:
        landmarks = landmarks - np.array(crop[:2], dtype=np.float32)
    digest = hashlib.blake2b(f"{info.digest}|{crop}".encode(), digest_size=10).hexdigest()
    return Record(rel, images / rel, label, valence, arousal, landmarks, crop[2] - crop[0], crop[3] - crop[1], digest,
                  split, crop=crop)


def read(source: Path, options: ReadOptions) -> DatasetIndex:
    folder = source if source.is_dir() else source.parent
    tables = _tables(source)
    columns = {}
    for csv_path, _ in tables:
        header = csv_header(csv_path)
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise AffectkitError(f"{csv_path} lacks the column(s) {', '.join(missing)} of AffectNet's official CSVs.")
        columns[csv_path] = {name: i for i, name in enumerate(header)}
    first = tables[0][0]
    images = _image_root(folder, first, columns[first]["subdirectory_filepath"])
    total = 0
    for csv_path, _ in tables:
        with open(csv_path, "rb") as f:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1  # less the header

    def keys() -> Iterator[tuple[Path, str | None, int, list[str]]]:
        for csv_path, split in tables:
            for line_no, row in _rows(csv_path):
                yield csv_path, split, line_no, row

    def build(key: tuple[Path, str | None, int, list[str]]) -> Record | Rejection:
        csv_path, split, line_no, row = key
        cols = columns[csv_path]
        rel = row[cols["subdirectory_filepath"]].strip() if len(row) > cols["subdirectory_filepath"] else ""
        try:
            return _record(images, csv_path.name, cols, split, line_no, row, options)
        except Reject as r:
            return Rejection(rel or f"{csv_path.name}:{line_no}", str(images / rel) if rel else f"{csv_path}:{line_no}",
                             r.kind, r.reason)

    where = f"in {images.relative_to(folder).as_posix()}/" if images != folder else "beside the CSVs"
    detail = f"{', '.join(p.name for p, _ in tables)}; images {where}"
    return collect(folder, NAME, keys(), build, total=total, detail=detail)
