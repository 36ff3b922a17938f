"""RAF-DB basic as released::

    DATA/EmoLabel/list_patition_label.txt     "train_00001.jpg 5" per line (the release's spelling of "partition")
    DATA/Image/aligned/train_00001_aligned.jpg    or    DATA/Image/original/train_00001.jpg

Labels 1..7 are RAF-DB's order (Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral), converted here; the
train/test split comes from the file names and validation is carved from train.

Where the release's manual annotation is (``DATA/Annotation/manual/train_00001_manu_attri.txt``, or the same files
in ``DATA/Annotation/manual.zip`` as released: five landmark lines, then gender, race and age band), each face's
``gender``, ``race`` and ``age`` are its attributes,
which ``evaluate``, ``compare``, ``run`` and ``benchmark`` score groups of faces by (``--by gender``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

import pandas as pd

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

NAME = "rafdb"
MANUAL_ANNOTATION = Path("Annotation") / "manual"
MANUAL_ARCHIVE = Path("Annotation") / "manual.zip"
ANNOTATION_SUFFIX = "_manu_attri.txt"
# The manual annotation's codes, in the order of its lines after the five landmarks.
ATTRIBUTE_CODES = {"gender": ("male", "female", "unsure"), "race": ("Caucasian", "African-American", "Asian"),
                   "age": ("0-3", "4-19", "20-39", "40-69", "70+")}
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
NEEDS = f"{LABEL_FILE.as_posix()} with images in Image/aligned/ or Image/original/"
# RAF-DB label -> affectkit class id.
RAFDB_TO_AFFECTKIT = {1: 3, 2: 4, 3: 5, 4: 1, 5: 2, 6: 6, 7: 0}


def find(path: Path, options: ReadOptions) -> Path | None:
    """DATA itself, or DATA/basic/ (the release's own folder name) holding the label file."""
    for root in (path, path / "basic"):
        if (root / LABEL_FILE).is_file():
            return root
    return None


def _image_folder(root: Path) -> tuple[Path, bool]:
    """The image folder and whether it holds the aligned faces (preferred: they are what RAF-DB's results use)."""
    for name, aligned in (("aligned", True), ("original", False)):
        if (root / "Image" / name).is_dir():
            return root / "Image" / name, aligned
    raise AffectkitError(f"{root} has {LABEL_FILE.as_posix()} but neither Image/aligned/ nor Image/original/.")


def _record(line_no: int, line: str, images: Path, aligned: bool) -> Record:
    source = f"{LABEL_FILE.name} line {line_no}"
    parts = line.split()
    if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
        raise Reject("line_invalid", f"{source}: {line.strip()!r} is not '<image name> <label 1..7>'")
    name, raw = parts[0], int(parts[1])
    if raw not in RAFDB_TO_AFFECTKIT:
        raise Reject("expression_out_of_range", f"{source}: label {raw} is outside RAF-DB's 1..7")
    split = next((s for s in ("train", "test") if name.startswith(s)), None)
    if split is None:
        raise Reject("split_invalid", f"{source}: {name} starts with neither train nor test, RAF-DB's split prefixes")
    file = images / (f"{Path(name).stem}_aligned{Path(name).suffix}" if aligned else name)
    try:
        info = inspect_image(file)
    except Reject as r:
        raise Reject(r.kind, f"{source}: {r.reason}") from None
    return Record(name, file, RAFDB_TO_AFFECTKIT[raw], width=info.width, height=info.height, digest=info.digest,
                  split=split)


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    images, aligned = _image_folder(root)
    keys = numbered_lines(root / LABEL_FILE)

    def build(key: tuple[int, str]) -> Record | Rejection:
        line_no, line = key
        try:
            return _record(line_no, line, images, aligned)
        except Reject as r:
            return Rejection(line.split()[0], f"{root / LABEL_FILE}:{line_no}", r.kind, r.reason)

    return collect(root, NAME, keys, build, detail=f"Image/{images.name}/")


def attributes(root: Path) -> pd.DataFrame | None:
    """Each face's gender, race and age band from the manual annotation, one row per face named by its ``id`` (its
    name in the label file); None where there is no annotation. A file too short or with a code out of range
    leaves that face's attributes blank."""
    annotations = _manual_annotations(root)
    if not annotations:
        return None
    rows = []
    for name, text in annotations:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        codes = lines[5:8] if len(lines) >= 8 else []
        row = {"id": name.removesuffix(ANNOTATION_SUFFIX) + ".jpg"}
        for (attribute, names), code in zip(ATTRIBUTE_CODES.items(), codes):
            row[attribute] = names[int(code)] if code.isdigit() and int(code) < len(names) else None
        rows.append(row)
    return pd.DataFrame(rows, columns=["id", *ATTRIBUTE_CODES])


def _manual_annotations(root: Path) -> list[tuple[str, str]]:
    """(file name, text) of each face's manual annotation, unpacked in Annotation/manual/ or, as released, in
    Annotation/manual.zip (read in place)."""
    folder = root / MANUAL_ANNOTATION
    if folder.is_dir() and (files := sorted(folder.glob(f"*{ANNOTATION_SUFFIX}"))):
        return [(file.name, file.read_text(errors="replace")) for file in files]
    archive = root / MANUAL_ARCHIVE
    if not archive.is_file():
        return []
    try:
        with zipfile.ZipFile(archive) as zipped:
            entries = sorted((e for e in zipped.infolist() if e.filename.endswith(ANNOTATION_SUFFIX)),
                             key=lambda e: e.filename)
            # An annotation is a few lines: a larger entry is no annotation (and is not inflated to find out).
            return [(PurePosixPath(e.filename).name, zipped.read(e).decode(errors="replace") if e.file_size <= 4096
                     else "") for e in entries]
    except (zipfile.BadZipFile, OSError) as exc:
        raise AffectkitError(f"{archive}: not a readable zip archive ({exc}); unpack it into {folder}/, or move it "
                             "away.") from None
