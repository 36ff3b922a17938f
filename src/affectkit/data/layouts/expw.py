"""ExpW (Expression in-the-Wild) as released: whole photos, one line per labelled face::

    DATA/label/label.lst       "name face_id top left right bottom confidence label" per line
    DATA/image/origin/<name>   the photos (``origin/`` as its archives unpack; ``image/`` itself also works)

Labels 0..6 are ExpW's order (Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral), converted here. Each face is
cropped by its box plus AffectNet's margin, clipped to the photo; a photo with several faces gives one record each.
ExpW gives no split and no subjects: the usual stratified split is made.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from affectkit.data.layouts.affectnet_official import face_crop
from affectkit.data.layouts.fer2013 import FER2013_TO_AFFECTKIT
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

NAME = "expw"
LABEL_FILE = Path("label") / "label.lst"
NEEDS = f"{LABEL_FILE.as_posix()} with the photos in image/origin/"
EXPW_TO_AFFECTKIT = FER2013_TO_AFFECTKIT  # ExpW's 0..6 are FER2013's order


def find(path: Path, options: ReadOptions) -> Path | None:
    """DATA itself, or DATA/ExpW/, holding the label file."""
    for root in (path, path / "ExpW"):
        if (root / LABEL_FILE).is_file():
            return root
    return None


def _image_folder(root: Path) -> Path:
    for folder in (root / "image" / "origin", root / "origin", root / "image"):
        if folder.is_dir():
            return folder
    raise AffectkitError(f"{root} has {LABEL_FILE.as_posix()} but no image/origin/ folder of photos (unpack "
                         "ExpW's origin.7z archives there).")


def _record(line_no: int, line: str, images: Path) -> Record:
    source = f"{LABEL_FILE.name} line {line_no}"
    fields = line.split()
    if len(fields) != 8:
        raise Reject("line_invalid", f"{source}: {len(fields)} fields; ExpW's lines hold 8 (name, face id, top, "
                                     "left, right, bottom, confidence, label)")
    name, face_id = fields[0], fields[1]
    try:
        top, left, right, bottom = (int(round(float(v))) for v in fields[2:6])
        raw = int(fields[7])
    except ValueError:
        raise Reject("line_invalid", f"{source}: the box or the label is not a number") from None
    if raw not in EXPW_TO_AFFECTKIT:
        raise Reject("expression_out_of_range", f"{source}: label {raw} is outside ExpW's 0..6")
    if right <= left or bottom <= top:
        raise Reject("box_invalid", f"{source}: the face box ({left}, {top})-({right}, {bottom}) has no area")
    try:
        info = inspect_image(images / name)
    except Reject as r:
        raise Reject(r.kind, f"{source}: {r.reason}") from None
    crop = face_crop((left, top, right - left, bottom - top), info.width, info.height, source)
    digest = hashlib.blake2b(f"{info.digest}|{crop}".encode(), digest_size=10).hexdigest()
    return Record(f"{name}#{face_id}", images / name, EXPW_TO_AFFECTKIT[raw], width=crop[2] - crop[0],
                  height=crop[3] - crop[1], digest=digest, crop=crop)


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    images = _image_folder(root)
    keys = numbered_lines(root / LABEL_FILE)

    def build(key: tuple[int, str]) -> Record | Rejection:
        line_no, line = key
        fields = line.split()
        try:
            return _record(line_no, line, images)
        except Reject as r:
            face = f"{fields[0]}#{fields[1]}" if len(fields) > 1 else fields[0]
            return Rejection(face, f"{root / LABEL_FILE}:{line_no}", r.kind, r.reason)

    return collect(root, NAME, keys, build, detail=f"faces cropped from {images.relative_to(root).as_posix()}/")
