"""AffectNet's per-sample ``.npy`` layout (also what ``make-demo-data`` writes)::

    DATA/annotations/<id>_exp.npy  <id>_val.npy  <id>_aro.npy  [<id>_lnd.npy]
    DATA/images/<id>.jpg|png
"""

from __future__ import annotations

import io
import math
import threading
from pathlib import Path

import numpy as np

from affectkit.data.records import (
    IMAGE_SUFFIXES,
    DatasetIndex,
    ReadOptions,
    Record,
    Reject,
    Rejection,
    affectnet_expression,
    collect,
    inspect_image,
    natural_key,
    parse_dimension,
    require_some_label,
)
from affectkit.errors import AffectkitError

NAME = "affectnet"
NEEDS = "annotations/<id>_exp.npy (+ _val, _aro, optional _lnd) and images/<id>.jpg"
ANNOTATION_KINDS = ("exp", "val", "aro", "lnd")


def find(path: Path, options: ReadOptions) -> Path | None:
    """DATA, where annotations/ holds AffectNet's .npy files beside images/ (COCO's annotations/ holds JSON)."""
    if not ((path / "annotations").is_dir() and (path / "images").is_dir()):
        return None
    return path if any((path / "annotations").glob("*_exp.npy")) else None


# numpy parses each .npy header with ast.literal_eval, which CPython 3.11 does not make safe across threads (now and
# then "AST constructor recursion depth mismatch"): the reader's threads take turns at it, or a valid file could be
# quarantined as unreadable.
_HEADER_LOCK = threading.Lock()


def _load_npy(path: Path) -> np.ndarray:
    if path.stat().st_size == 0:
        raise Reject("annotation_empty", f"annotation file {path.name} is empty (0 bytes)")
    try:
        data = io.BytesIO(path.read_bytes())  # read in parallel; parsed in turn
        with _HEADER_LOCK:
            return np.load(data, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError for corrupt files
        raise Reject("annotation_unreadable", f"annotation file {path.name} is not a readable .npy file ({exc})") from None


def _scalar(path: Path, what: str) -> float:
    """AffectNet stores scalars as 0-d string arrays ('1', '0.785714'); numeric arrays are accepted too."""
    arr = _load_npy(path)
    if arr.size != 1:
        raise Reject("annotation_shape", f"{path.name} holds {arr.size} values; {what} must be a single value")
    value = arr.reshape(()).item()
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise Reject("annotation_dtype", f"{path.name} holds {value!r}, not a number") from None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise Reject("annotation_dtype", f"{path.name} has dtype {arr.dtype}; {what} must be numeric")
    return float(value)


def _landmarks(path: Path) -> np.ndarray:
    arr = _load_npy(path)
    if not np.issubdtype(arr.dtype, np.number):
        try:
            arr = arr.astype(np.float64)
        except ValueError:
            raise Reject("annotation_dtype", f"{path.name} has dtype {arr.dtype}; landmarks must be numbers") from None
    if arr.size != 136:
        raise Reject("annotation_shape", f"{path.name} holds {arr.size} values; 68 landmarks need 136")
    pts = arr.astype(np.float32).reshape(68, 2)
    if not np.isfinite(pts).all():
        raise Reject("landmarks_nan", f"{path.name} contains NaN or infinite coordinates")
    return pts


def _index(root: Path) -> tuple[dict[str, dict[str, Path]], dict[str, Path]]:
    annotations: dict[str, dict[str, Path]] = {}
    for p in (root / "annotations").iterdir():
        stem, _, kind = p.stem.rpartition("_")
        if p.suffix == ".npy" and stem and kind in ANNOTATION_KINDS:
            annotations.setdefault(stem, {})[kind] = p
    images = {p.stem: p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    return annotations, images


def _record(sample_id: str, files: dict[str, Path], image: Path | None, wants_va: bool,
            options: ReadOptions) -> Record:
    if image is None:
        raise Reject("image_missing", f"no image images/{sample_id}.jpg for annotations/{sample_id}_*.npy")
    if "exp" not in files:
        raise Reject("annotation_missing", f"annotation file annotations/{sample_id}_exp.npy is missing")
    label = affectnet_expression(_scalar(files["exp"], "expression"), files["exp"].name, options)
    valence = arousal = math.nan
    if wants_va:
        for kind in ("val", "aro"):
            if kind not in files:
                raise Reject("annotation_missing", f"annotation file annotations/{sample_id}_{kind}.npy is missing")
        valence = parse_dimension(_scalar(files["val"], "valence"), "valence", files["val"].name)
        arousal = parse_dimension(_scalar(files["aro"], "arousal"), "arousal", files["aro"].name)
    require_some_label(label, valence, files["exp"].name)
    landmarks = _landmarks(files["lnd"]) if "lnd" in files else None
    info = inspect_image(image)
    return Record(sample_id, image, label, valence, arousal, landmarks, info.width, info.height, info.digest)


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    annotations, images = _index(root)
    if not annotations and not images:
        raise AffectkitError(f"{root} has annotations/ and images/ folders but no samples in them.")
    # Valence/arousal are required per record only when the data set annotates them at all.
    wants_va = any("val" in f or "aro" in f for f in annotations.values())
    ids = sorted(set(annotations) | set(images), key=natural_key)

    def build(sample_id: str) -> Record | Rejection:
        files = annotations.get(sample_id)
        image = images.get(sample_id)
        if files is None:
            return Rejection(sample_id, str(image), "orphan_image", f"image {image.name} has no annotations/{sample_id}_*.npy")
        try:
            return _record(sample_id, files, image, wants_va, options)
        except Reject as r:
            return Rejection(sample_id, str(image or files.get("exp") or root), r.kind, r.reason)

    return collect(root, NAME, ids, build)
