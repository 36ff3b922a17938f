"""FER2013's CSV: ``emotion,pixels,Usage``, each image 48x48 grayscale as a space-separated pixel string.

FER2013's labels (0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral) are converted here; Usage
Training / PublicTest / PrivateTest become train / val / test. No image files are written: a record points at its
row's byte offset and the cache builder decodes the pixel string straight into the cache.

FER+ (Microsoft's relabelling of the same faces by ten annotators each, eight classes with contempt): where
``fer2013new.csv`` sits beside the CSV, its votes replace FER2013's labels, row by row, by FER+'s majority rule,
and each record also carries the distribution of its votes (FER+'s "crossentropy" rule), which training uses in
place of the class where ``label_distribution`` is on.
"""

from __future__ import annotations

import csv
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectkit.data.records import DatasetIndex, ReadOptions, Record, Reject, Rejection, collect, csv_header
from affectkit.errors import AffectkitError

NAME = "fer2013"
NEEDS = "a CSV with columns emotion, pixels[, Usage] holding 48x48 grayscale pixel strings"
SIZE = 48
# FER2013 label -> affectkit class id.
FER2013_TO_AFFECTKIT = {0: 6, 1: 5, 2: 4, 3: 1, 4: 2, 5: 3, 6: 0}
USAGE_SPLITS = {"training": "train", "publictest": "val", "privatetest": "test"}
FERPLUS_FILE = "fer2013new.csv"
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown",
                   "nf")
FERPLUS_TO_AFFECTKIT = (0, 1, 3, 2, 6, 5, 4, 7)  # of FER+'s eight expression columns, in order
NO_MAJORITY = -1  # a FER+ row whose voters gave no expression a majority (or said unknown / not a face)


def _is_fer(path: Path) -> bool:
    return {"emotion", "pixels"} <= set(csv_header(path))


def find(path: Path, options: ReadOptions) -> Path | None:
    """The CSV itself, or the folder's CSV with FER2013's columns (one with a Usage column first: the full release
    rather than a challenge's train.csv)."""
    if path.is_file():
        return path if path.suffix.lower() == ".csv" and _is_fer(path) else None
    candidates = [p for p in sorted(path.glob("*.csv")) if _is_fer(p)]
    return max(candidates, key=lambda p: "usage" in csv_header(p), default=None)


def pixels_from_string(text: str, source: str) -> np.ndarray:
    """(48, 48) uint8 from a pixel string; a string of the wrong length or with non-numbers is rejected."""
    values = text.split()
    if len(values) != SIZE * SIZE:
        raise Reject("pixels_length", f"{source}: the pixel string holds {len(values)} values; a 48x48 image needs 2304")
    try:
        arr = np.array(values, dtype=np.int32)
    except ValueError:
        bad = next(v for v in values if not v.lstrip("-").isdigit())
        raise Reject("pixels_invalid", f"{source}: the pixel string holds {bad!r}, not a whole number") from None
    if arr.min() < 0 or arr.max() > 255:
        raise Reject("pixels_out_of_range", f"{source}: the pixel string holds values outside 0..255")
    return arr.astype(np.uint8).reshape(SIZE, SIZE)


def _fields(line: bytes) -> list[str]:
    return next(csv.reader([line.decode("utf-8", errors="replace")]), [])


@functools.lru_cache(maxsize=8)
def _pixels_column(csv_path: str) -> int:
    return csv_header(Path(csv_path)).index("pixels")


def row_pixels(csv_path: str | Path, offset: int) -> np.ndarray:
    """The (48, 48) image of the row at byte ``offset``: what the cache builder reads instead of an image file."""
    with open(csv_path, "rb") as f:
        f.seek(offset)
        line = f.readline()
    try:
        return pixels_from_string(_fields(line)[_pixels_column(str(csv_path))], f"{Path(csv_path).name} at byte {offset}")
    except (Reject, IndexError, ValueError) as exc:
        raise AffectkitError(f"{csv_path} changed since it was read ({exc}); run the command again.") from None


@dataclass(frozen=True)
class _Columns:
    n: int
    emotion: int
    pixels: int
    usage: int | None


def ferplus_label(votes: list[float]) -> int:
    """FER+'s majority rule (the FERPlus repository's "majority" mode): a single vote for a class is dropped as an
    outlier, and the class with more than half of the remaining votes wins; ``NO_MAJORITY`` where none has, or where
    the winner is "unknown" or "not a face"."""
    kept = [v if v > 1 else 0.0 for v in votes]
    best = max(range(len(kept)), key=kept.__getitem__)
    if kept[best] == 0 or kept[best] <= sum(kept) / 2 or best >= len(FERPLUS_TO_AFFECTKIT):
        return NO_MAJORITY
    return FERPLUS_TO_AFFECTKIT[best]


def ferplus_distribution(votes: list[float]) -> tuple[float, ...] | None:
    """FER+'s label distribution (the FERPlus repository's "crossentropy" and "probability" modes), over affectkit's
    eight classes: single votes dropped as outliers, then the most-voted classes taken, ties together, until they
    hold three quarters of the votes or number three; None where they hold no more than half, number more than
    three, or the first of them is "unknown" or "not a face". Taking "unknown" ends the search; it is itself left
    out when an expression came before it."""
    remaining = [v if v > 1 else 0.0 for v in votes]
    total = sum(remaining)
    taken = [0.0] * len(votes)
    covered, count, valid = 0.0, 0, True
    while covered < 0.75 * total and count < 3 and valid:
        top = max(remaining)
        for i, v in enumerate(remaining):
            if v != top:
                continue
            taken[i], remaining[i] = top, 0.0
            covered += top
            count += 1
            if i >= len(FERPLUS_TO_AFFECTKIT):  # unknown or not a face
                valid = False
                if sum(taken) > top:
                    taken[i] = 0.0
                    count -= 1
                break
    expressions = taken[: len(FERPLUS_TO_AFFECTKIT)]
    if sum(taken) <= 0.5 * total or count > 3 or max(taken) > max(expressions):
        return None
    distribution = [0.0] * len(FERPLUS_TO_AFFECTKIT)
    for column, share in enumerate(expressions):
        distribution[FERPLUS_TO_AFFECTKIT[column]] = share / sum(expressions)
    return tuple(distribution)


def ferplus_votes(votes: list[float]) -> tuple[int, tuple[float, ...] | None]:
    """(majority class or ``NO_MAJORITY``, the distribution training may use): a row FER+'s distribution rule
    discards (more than three classes tied for the last place) keeps its majority class alone."""
    label = ferplus_label(votes)
    if label == NO_MAJORITY:
        return label, None
    distribution = ferplus_distribution(votes)
    return label, distribution or tuple(float(c == label) for c in range(len(FERPLUS_TO_AFFECTKIT)))


def _ferplus_labels(path: Path) -> dict[int, tuple[int, tuple[float, ...] | None] | str]:
    """Row number (from 1 after the header, as :func:`_rows` counts) -> (affectkit class id or ``NO_MAJORITY``, vote
    distribution), or the problem with the row."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in FERPLUS_COLUMNS if c not in header]
        if missing:
            raise AffectkitError(f"{path} lacks FER+'s vote column(s) {', '.join(missing)}: it is read as FER+'s "
                                 "labels because of its name; rename it to read FER2013's own labels.")
        columns = [header.index(c) for c in FERPLUS_COLUMNS]
        labels: dict[int, tuple[int, tuple[float, ...] | None] | str] = {}
        for row, fields in enumerate(reader, start=1):
            if not fields:
                continue
            try:
                labels[row] = ferplus_votes([float(fields[c]) for c in columns])
            except (ValueError, IndexError):
                labels[row] = f"{path.name} row {row} does not hold ten vote counts"
    return labels


def _rows(csv_path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(row number counting from 1 after the header, byte offset, raw line), streamed."""
    with open(csv_path, "rb") as f:
        offset = len(f.readline())
        for row, line in enumerate(f, start=1):
            if line.strip():
                yield row, offset, line
            offset += len(line)


def _fer2013_label(raw: str, source: str) -> int:
    raw = raw.strip()
    if not raw.lstrip("-").isdigit():
        raise Reject("expression_invalid", f"{source}: emotion {raw!r} is not one of FER2013's labels 0..6")
    if int(raw) not in FER2013_TO_AFFECTKIT:
        raise Reject("expression_out_of_range", f"{source}: emotion {raw} is outside FER2013's 0..6")
    return FER2013_TO_AFFECTKIT[int(raw)]


def _ferplus(row: tuple[int, tuple[float, ...] | None] | str | None, source: str) -> tuple[int, tuple[float, ...]]:
    if row is None:
        raise Reject("ferplus_missing", f"{source} has no row in {FERPLUS_FILE}")
    if isinstance(row, str):
        raise Reject("ferplus_invalid", row)
    label, distribution = row
    if label == NO_MAJORITY:
        raise Reject("ferplus_no_majority", f"{source}: FER+'s voters gave no expression a majority (or called the "
                                            "face unknown, or not a face)")
    return label, distribution


def _record(csv_path: Path, cols: _Columns, row: int, offset: int, line: bytes,
            ferplus: dict[int, tuple[int, tuple[float, ...] | None] | str] | None) -> Record:
    source = f"{csv_path.name} row {row}"
    fields = _fields(line)
    if len(fields) < cols.n:
        raise Reject("row_invalid", f"{source} has {len(fields)} field(s); the header names {cols.n}")
    label, distribution = ((_fer2013_label(fields[cols.emotion], source), None) if ferplus is None
                           else _ferplus(ferplus.get(row), source))
    pixels = pixels_from_string(fields[cols.pixels], source)
    split = None
    if cols.usage is not None:
        usage = fields[cols.usage].strip()
        split = USAGE_SPLITS.get(usage.lower())
        if split is None:
            raise Reject("split_invalid", f"{source}: Usage {usage!r} is not Training, PublicTest or PrivateTest")
    digest = hashlib.blake2b(pixels.tobytes(), digest_size=10).hexdigest()
    return Record(f"{csv_path.stem}:{row}", csv_path, label, width=SIZE, height=SIZE,
                  digest=digest, split=split, row_offset=offset, expression_distribution=distribution)


def read(csv_path: Path, options: ReadOptions) -> DatasetIndex:
    header = csv_header(csv_path)
    if not {"emotion", "pixels"} <= set(header):
        raise AffectkitError(f"{csv_path} lacks FER2013's columns emotion and pixels (it has {', '.join(header) or 'none'}).")
    cols = _Columns(len(header), header.index("emotion"), header.index("pixels"),
                    header.index("usage") if "usage" in header else None)
    with open(csv_path, "rb") as f:
        total = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1  # less the header
    ferplus_path = csv_path.parent / FERPLUS_FILE
    ferplus = _ferplus_labels(ferplus_path) if ferplus_path.is_file() else None

    def build(key: tuple[int, int, bytes]) -> Record | Rejection:
        row, offset, line = key
        try:
            return _record(csv_path, cols, row, offset, line, ferplus)
        except Reject as r:
            return Rejection(f"{csv_path.stem}:{row}", f"{csv_path}:{row + 1}", r.kind, r.reason)

    detail = csv_path.name if ferplus is None else (
        f"{csv_path.name} with FER+'s labels from {FERPLUS_FILE}, by majority; vote distributions for "
        "label_distribution")
    return collect(csv_path, NAME, _rows(csv_path), build, total=total, detail=detail)
