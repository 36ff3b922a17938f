"""Read AffectNet-layout folders and CSV manifests into validated records, quarantining bad ones with a reason.

AffectNet layout::

    DATA/annotations/<id>_exp.npy  <id>_val.npy  <id>_aro.npy  [<id>_lnd.npy]
    DATA/images/<id>.jpg|png

Manifest: a CSV with columns ``path, expression`` and optional ``valence, arousal, split``; relative paths are
resolved against the CSV's folder. Records without valence/arousal keep NaN there and train the expression head only.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from affectkit.config import CLASS_NAMES
from affectkit.errors import AffectkitError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
ANNOTATION_KINDS = ("exp", "val", "aro", "lnd")
# AffectNet codes beyond the 8 expressions; they are dropped, counted by kind.
AFFECTNET_NON_EXPRESSIONS = {8: "none", 9: "uncertain", 10: "no_face"}
VA_NOT_ANNOTATED = -2.0
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True, slots=True)
class Record:
    id: str
    image_path: Path
    expression: int
    valence: float = math.nan  # NaN: not annotated (expression-only record)
    arousal: float = math.nan
    landmarks: np.ndarray | None = field(default=None, compare=False, repr=False)  # (68, 2) image pixels
    width: int = 0
    height: int = 0
    digest: str = ""  # content hash of the image file; keys the decoded-image cache
    split: str | None = None  # a split the data set carries itself (manifest column)

    @property
    def has_valence_arousal(self) -> bool:
        return math.isfinite(self.valence) and math.isfinite(self.arousal)


@dataclass(frozen=True)
class Rejection:
    id: str
    path: str
    kind: str  # machine-readable category, counted in the summary
    reason: str  # one sentence for a person


@dataclass
class DatasetIndex:
    root: Path
    layout: str  # "affectnet" or "manifest"
    records: list[Record]
    rejected: list[Rejection]

    @property
    def has_valence_arousal(self) -> bool:
        return any(r.has_valence_arousal for r in self.records)

    def rejection_counts(self) -> dict[str, int]:
        return dict(Counter(r.kind for r in self.rejected))

    def quarantine_frame(self) -> pd.DataFrame:
        return pd.DataFrame([vars(r) for r in self.rejected], columns=["id", "path", "kind", "reason"])

    def write_quarantine(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.quarantine_frame().to_csv(path, index=False)
        return path


class _Reject(Exception):
    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# -- image checks ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ImageInfo:
    width: int
    height: int
    digest: str


def inspect_image(path: Path) -> _ImageInfo:
    """Hash and fully decode an image (at reduced scale where the codec allows) to catch truncation and garbage."""
    if not path.is_file():
        raise _Reject("image_missing", f"image file {path.name} is missing")
    data = path.read_bytes()
    if not data:
        raise _Reject("image_empty", f"image file {path.name} is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width == 0 or height == 0:
                raise _Reject("image_zero_size", f"image {path.name} has zero size ({width}x{height})")
            # JPEG draft mode decodes at 1/8 scale but still reads every entropy-coded byte: cheap and complete.
            img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            img.load()
    except _Reject:
        raise
    except UnidentifiedImageError:
        raise _Reject("not_an_image", f"{path.name} is not an image (no known image format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        kind = "image_truncated" if "truncat" in str(exc).lower() else "image_unreadable"
        raise _Reject(kind, f"image {path.name} cannot be decoded ({exc})") from None
    return _ImageInfo(width, height, hashlib.blake2b(data, digest_size=10).hexdigest())


# -- annotation parsing ---------------------------------------------------------------------------------------


def _load_npy(path: Path) -> np.ndarray:
    if path.stat().st_size == 0:
        raise _Reject("annotation_empty", f"annotation file {path.name} is empty (0 bytes)")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError for corrupt files
        raise _Reject("annotation_unreadable", f"annotation file {path.name} is not a readable .npy file ({exc})") from None


def _scalar(path: Path, what: str) -> float:
    """AffectNet stores scalars as 0-d string arrays ('1', '0.785714'); numeric arrays are accepted too."""
    arr = _load_npy(path)
    if arr.size != 1:
        raise _Reject("annotation_shape", f"{path.name} holds {arr.size} values; {what} must be a single value")
    value = arr.reshape(()).item()
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _Reject("annotation_dtype", f"{path.name} holds {value!r}, not a number") from None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise _Reject("annotation_dtype", f"{path.name} has dtype {arr.dtype}; {what} must be numeric")
    return float(value)


def parse_expression(value: float | str, source: str) -> int:
    if isinstance(value, str):
        names = {n.lower(): i for i, n in enumerate(CLASS_NAMES)}
        if value.strip().lower() in names:
            return names[value.strip().lower()]
        try:
            value = float(value)
        except ValueError:
            raise _Reject("expression_invalid", f"{source}: expression {value!r} is neither 0..7 nor a class name") from None
    if not math.isfinite(value) or value != int(value):
        raise _Reject("expression_invalid", f"{source}: expression {value!r} is not an integer class id")
    label = int(value)
    if label in AFFECTNET_NON_EXPRESSIONS:
        kind = AFFECTNET_NON_EXPRESSIONS[label]
        raise _Reject(f"expression_{kind}", f"{source}: expression {label} ('{kind}' in AffectNet) is not one of the 8 classes")
    if not 0 <= label < len(CLASS_NAMES):
        raise _Reject("expression_out_of_range", f"{source}: expression {label} is outside 0..7")
    return label


def parse_dimension(value: float, name: str, source: str) -> float:
    if value == VA_NOT_ANNOTATED:
        raise _Reject(f"{name}_not_annotated", f"{source}: {name} is -2, AffectNet's 'not annotated' marker")
    if math.isnan(value):
        raise _Reject(f"{name}_nan", f"{source}: {name} is NaN")
    if math.isinf(value):
        raise _Reject(f"{name}_infinite", f"{source}: {name} is infinite")
    if not -1.0 <= value <= 1.0:
        raise _Reject(f"{name}_out_of_range", f"{source}: {name} {value:g} is outside [-1, 1]")
    return float(value)


def _landmarks(path: Path) -> np.ndarray:
    arr = _load_npy(path)
    if not np.issubdtype(arr.dtype, np.number):
        try:
            arr = arr.astype(np.float64)
        except ValueError:
            raise _Reject("annotation_dtype", f"{path.name} has dtype {arr.dtype}; landmarks must be numbers") from None
    if arr.size != 136:
        raise _Reject("annotation_shape", f"{path.name} holds {arr.size} values; 68 landmarks need 136")
    pts = arr.astype(np.float32).reshape(68, 2)
    if not np.isfinite(pts).all():
        raise _Reject("landmarks_nan", f"{path.name} contains NaN or infinite coordinates")
    return pts


# -- AffectNet layout -----------------------------------------------------------------------------------------


def _index_affectnet(root: Path) -> tuple[dict[str, dict[str, Path]], dict[str, Path]]:
    annotations: dict[str, dict[str, Path]] = {}
    for p in (root / "annotations").iterdir():
        stem, _, kind = p.stem.rpartition("_")
        if p.suffix == ".npy" and stem and kind in ANNOTATION_KINDS:
            annotations.setdefault(stem, {})[kind] = p
    images = {p.stem: p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    return annotations, images


def _affectnet_record(
    sample_id: str, files: dict[str, Path], image: Path | None, root: Path, wants_va: bool
) -> Record:
    if image is None:
        raise _Reject("image_missing", f"no image images/{sample_id}.jpg for annotations/{sample_id}_*.npy")
    if "exp" not in files:
        raise _Reject("annotation_missing", f"annotation file annotations/{sample_id}_exp.npy is missing")
    label = parse_expression(_scalar(files["exp"], "expression"), files["exp"].name)
    valence = arousal = math.nan
    if wants_va:
        for kind in ("val", "aro"):
            if kind not in files:
                raise _Reject("annotation_missing", f"annotation file annotations/{sample_id}_{kind}.npy is missing")
        valence = parse_dimension(_scalar(files["val"], "valence"), "valence", files["val"].name)
        arousal = parse_dimension(_scalar(files["aro"], "arousal"), "arousal", files["aro"].name)
    landmarks = _landmarks(files["lnd"]) if "lnd" in files else None
    info = inspect_image(image)
    return Record(sample_id, image, label, valence, arousal, landmarks, info.width, info.height, info.digest)


def _read_affectnet(root: Path, progress: bool) -> DatasetIndex:
    annotations, images = _index_affectnet(root)
    if not annotations and not images:
        raise AffectkitError(f"{root} has annotations/ and images/ folders but no samples in them.")
    # Valence/arousal are required per record only when the data set annotates them at all.
    wants_va = any("val" in f or "aro" in f for f in annotations.values())
    ids = sorted(set(annotations) | set(images), key=_natural_key)

    def build(sample_id: str) -> Record | Rejection:
        files = annotations.get(sample_id)
        image = images.get(sample_id)
        if files is None:
            return Rejection(sample_id, str(image), "orphan_image", f"image {image.name} has no annotations/{sample_id}_*.npy")
        try:
            return _affectnet_record(sample_id, files, image, root, wants_va)
        except _Reject as r:
            return Rejection(sample_id, str(image or files.get("exp") or root), r.kind, r.reason)

    return _collect(root, "affectnet", ids, build, progress)


# -- manifest ---------------------------------------------------------------------------------------------------


def _read_manifest(csv_path: Path, progress: bool) -> DatasetIndex:
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise AffectkitError(f"{csv_path} is not a readable CSV manifest ({exc}).") from None
    table.columns = [c.strip().lower() for c in table.columns]
    missing = {"path", "expression"} - set(table.columns)
    if missing:
        raise AffectkitError(
            f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}; a manifest needs path, expression "
            "and optionally valence, arousal, split."
        )
    base = csv_path.parent
    rows = table.to_dict("records")

    def build(i: int) -> Record | Rejection:
        row = rows[i]
        source = f"{csv_path.name} line {i + 2}"
        image = Path(row["path"])
        image = image if image.is_absolute() else base / image
        try:
            label = parse_expression(row["expression"], source)
            va = [_optional_float(row.get(k, ""), k, source) for k in ("valence", "arousal")]
            if all(math.isfinite(v) for v in va):
                va = [parse_dimension(v, k, source) for v, k in zip(va, ("valence", "arousal"))]
            elif any(math.isfinite(v) for v in va):
                raise _Reject("annotation_missing", f"{source}: valence and arousal must be given together")
            split = _parse_split(row.get("split", ""), source)
            info = inspect_image(image)
        except _Reject as r:
            return Rejection(row["path"], str(image), r.kind, r.reason)
        return Record(row["path"], image, label, va[0], va[1], None, info.width, info.height, info.digest, split)

    return _collect(csv_path, "manifest", range(len(rows)), build, progress)


def _optional_float(raw: str, name: str, source: str) -> float:
    raw = (raw or "").strip()
    if raw == "":
        return math.nan
    try:
        value = float(raw)
    except ValueError:
        raise _Reject(f"{name}_invalid", f"{source}: {name} {raw!r} is not a number") from None
    if math.isnan(value):
        raise _Reject(f"{name}_nan", f"{source}: {name} is NaN")
    return value


def _parse_split(raw: str, source: str) -> str | None:
    raw = (raw or "").strip().lower()
    if not raw:
        return None
    if raw not in SPLIT_ALIASES:
        raise _Reject("split_invalid", f"{source}: split {raw!r} is not train, val or test")
    return SPLIT_ALIASES[raw]


# -- shared ---------------------------------------------------------------------------------------------------


def _natural_key(s: str) -> tuple:
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def _collect(root: Path, layout: str, keys: Iterable, build: Callable, progress: bool) -> DatasetIndex:
    keys = list(keys)
    from affectkit.progress import track

    # Decoding releases the GIL, so threads overlap file reads and decodes.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(track(pool.map(build, keys), total=len(keys), description="Checking data", enabled=progress))
    records = [r for r in results if isinstance(r, Record)]
    rejected = [r for r in results if isinstance(r, Rejection)]
    if layout == "manifest":
        split_given = [r.split is not None for r in records]
        if any(split_given) and not all(split_given):
            raise AffectkitError(f"{root}: the split column is filled for some rows and empty for others; fill all or none.")
    return DatasetIndex(root, layout, records, rejected)


def _layout_error(path: Path) -> AffectkitError:
    return AffectkitError(
        f"{path} is not an affectkit data set: expected a folder with annotations/<id>_exp.npy (+ _val, _aro, "
        "optional _lnd) and images/<id>.jpg, or a CSV manifest with columns path, expression[, valence, arousal, split]."
    )


def read_dataset(path: str | Path, progress: bool = True) -> DatasetIndex:
    """Validate every sample of an AffectNet-layout folder or a CSV manifest; bad samples go to ``rejected``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise AffectkitError(f"{path} does not exist.")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise _layout_error(path)
        index = _read_manifest(path, progress)
    elif (path / "annotations").is_dir() and (path / "images").is_dir():
        index = _read_affectnet(path, progress)
    elif (path / "manifest.csv").is_file():
        index = _read_manifest(path / "manifest.csv", progress)
    else:
        raise _layout_error(path)
    if not index.records:
        counts = ", ".join(f"{k}: {v}" for k, v in index.rejection_counts().items()) or "none found"
        raise AffectkitError(f"{path} has no valid samples (rejected by reason: {counts}).")
    return index
