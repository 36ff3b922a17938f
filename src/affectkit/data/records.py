"""What every layout reader produces: validated records, rejections with a reason, and the checks they share."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from affectkit.config import CLASS_NAMES, NO_EXPRESSION
from affectkit.errors import AffectkitError, one_line
from affectkit.imaging import HEIF_MISSING, HEIF_SUFFIXES, register_photo_decoders
from affectkit.progress import reporter

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm",
                  ".avif", *HEIF_SUFFIXES)
# Photo formats found in people's folders that affectkit does not decode (neither Pillow nor OpenCV reads them):
# a data set's files of these kinds are quarantined by name, not passed over.
UNREAD_PHOTO_SUFFIXES = (".jxl", ".dng", ".cr2", ".nef", ".arw")
# AffectNet codes beyond the 8 expressions; they are dropped, counted by kind.
AFFECTNET_NON_EXPRESSIONS = {8: "none", 9: "uncertain", 10: "no_face"}
VA_NOT_ANNOTATED = -2.0
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
                 "test": "test", "testing": "test",
                 # FER2013's Usage names, which its image-folder copies keep
                 "publictest": "val", "privatetest": "test"}

# Names data sets and their shared copies give the classes (folder names, label columns), matched
# case-insensitively ("suprise" is how some copies spell it).
CLASS_SYNONYMS: dict[int, tuple[str, ...]] = {
    0: ("neutral", "neutrality"),
    1: ("happy", "happiness", "joy"),
    2: ("sad", "sadness"),
    3: ("surprise", "surprised", "suprise"),
    4: ("fear", "fearful", "afraid", "scared"),
    5: ("disgust", "disgusted"),
    6: ("anger", "angry"),
    7: ("contempt", "contemptuous"),
}
_CLASS_BY_NAME = {name: label for label, names in CLASS_SYNONYMS.items() for name in names}
IGNORE = "ignore"  # a class_map value: leave that folder out

LAYOUT_TITLES = {
    "affectnet": "AffectNet .npy annotations",
    "affectnet_official": "AffectNet official CSV",
    "fer2013": "FER2013 CSV",
    "ferplus": "FER+ folders",
    "rafdb": "RAF-DB basic",
    "expw": "ExpW",
    "yolo": "YOLO face boxes",
    "coco": "COCO face boxes",
    "voc": "Pascal VOC face boxes",
    "affwild2": "Aff-Wild2",
    "ckplus": "CK+ sequences",
    "oulu_casia": "Oulu-CASIA sequences",
    "afew_va": "AFEW-VA",
    "file_names": "labels in file names",
    "manifest": "CSV manifest",
    "class_folders": "class folders",
}


def class_from_name(name: str) -> int | None:
    return _CLASS_BY_NAME.get(name.strip().lower())


def accepted_class_names() -> str:
    return "; ".join("/".join(names) for names in CLASS_SYNONYMS.values())


@dataclass(frozen=True, slots=True)
class Record:
    id: str
    image_path: Path
    expression: int  # NO_EXPRESSION where the face is annotated for valence/arousal only
    valence: float = math.nan  # NaN: not annotated (expression-only record)
    arousal: float = math.nan
    # (68, 2) in the pixels the record denotes: the crop where there is one, else the whole image.
    landmarks: np.ndarray | None = field(default=None, compare=False, repr=False)
    width: int = 0  # of the record's pixels (the crop where there is one)
    height: int = 0
    digest: str = ""  # content hash of the record's pixels; keys the decoded-image cache
    split: str | None = None  # a split the data set carries itself
    group: str | None = None  # the subject, where the data says who is who; splits keep a group on one side
    crop: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) of image_path holding the face
    # image_path is a FER2013-style CSV and the record's pixel string is on the line at this byte offset.
    row_offset: int | None = None
    # Where annotators' votes are given (FER+): their distribution over the eight classes, summing to 1, whose most
    # voted class is ``expression``; training uses it in place of the class where ``label_distribution`` is on.
    expression_distribution: tuple[float, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def has_valence_arousal(self) -> bool:
        return math.isfinite(self.valence) and math.isfinite(self.arousal)

    @property
    def has_expression(self) -> bool:
        return self.expression != NO_EXPRESSION

    @property
    def pixels_key(self) -> str:
        """What the record's pixels are known by: their digest, or the record's id where none was taken."""
        return self.digest or self.id


@dataclass(frozen=True)
class Rejection:
    id: str
    path: str
    kind: str  # machine-readable category, counted in the summary
    reason: str  # one sentence for a person


def quarantine_frame(rejected: Iterable[Rejection]) -> pd.DataFrame:
    """What ``quarantine.csv`` holds: one row per rejected sample, its id, file, kind and reason."""
    return pd.DataFrame([vars(r) for r in rejected], columns=["id", "path", "kind", "reason"])


@dataclass
class DatasetIndex:
    root: Path
    layout: str  # a key of LAYOUT_TITLES
    records: list[Record]
    rejected: list[Rejection]
    detail: str = ""  # what the reader found, for describe(): "train/ test/ folders", "fer2013.csv"
    group_source: str | None = None  # what the groups come from: "group_pattern ^(S\d+)_", "manifest column subject"
    # The path the data set was given as (a folder, a file, an archive), which names it; ``root`` is where it was
    # read (a folder inside it, the folder an archive unpacked to).
    source: Path | None = None

    @property
    def given_as(self) -> Path:
        return self.source or self.root

    @property
    def has_valence_arousal(self) -> bool:
        return any(r.has_valence_arousal for r in self.records)

    def classes_present(self) -> list[int]:
        return sorted({r.expression for r in self.records} - {NO_EXPRESSION})

    def without_expression(self) -> int:
        """How many records are annotated for valence/arousal only."""
        return sum(not r.has_expression for r in self.records)

    def absent_classes(self) -> list[str]:
        present = set(self.classes_present())
        return [name for i, name in enumerate(CLASS_NAMES) if i not in present]

    def given_splits(self) -> list[str]:
        given = {r.split for r in self.records}
        return [s for s in ("train", "val", "test") if s in given]

    def describe(self) -> str:
        """One line naming the layout and what was found: ``class folders (train/ test/ folders; 7 classes, no
        Contempt; train/test as given, val carved from train; 80 valid, 2 quarantined)``."""
        parts = [self.detail] if self.detail else []
        absent, present = self.absent_classes(), self.classes_present()
        if present:
            parts.append(f"{len(present)} classes" + (f", no {', '.join(absent)}" if absent else ""))
        else:
            parts.append("no expression classes")
        unclassed = self.without_expression()
        if unclassed:
            parts.append(f"{unclassed} with valence/arousal only")
        given = self.given_splits()
        if given:
            carved = [s for s in ("val", "test") if s not in given]
            plan = f"{'/'.join(given)} as given"
            if carved and "train" in given:
                plan += f", {' and '.join(carved)} carved from train"
            parts.append(plan)
        if self.group_source:
            parts.append(f"grouped by {self.group_source}")
        parts.append(f"{len(self.records)} valid, {len(self.rejected)} quarantined")
        copies, relabelled = self.copies()
        if copies:
            parts.append(f"{copies} of them copies of another (identical pixels)"
                         + (f", {relabelled} of those labelled otherwise" if relabelled else ""))
        return f"{LAYOUT_TITLES[self.layout]} ({'; '.join(parts)})"

    def copies(self) -> tuple[int, int]:
        """How many records have the same pixels as an earlier one (a scraped set's re-uploads, the same file in two
        folders; the split keeps copies on one side where it chooses, ``splits.make_splits``), and how many of those
        carry another expression than the first (the annotators disagreed with themselves)."""
        first: dict[str, int] = {}
        copies = relabelled = 0
        for r in self.records:
            key = r.pixels_key
            if key in first:
                copies += 1
                relabelled += first[key] != r.expression
            else:
                first[key] = r.expression
        return copies, relabelled

    def rejection_counts(self) -> dict[str, int]:
        return dict(Counter(r.kind for r in self.rejected))

    def quarantine_frame(self) -> pd.DataFrame:
        return quarantine_frame(self.rejected)

    def write_quarantine(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.quarantine_frame().to_csv(path, index=False)
        return path


@dataclass(frozen=True)
class ReadOptions:
    class_map: dict[str, str] = field(default_factory=dict)  # folder name -> class name or "ignore"
    ckplus_neutral_onset: bool = False  # CK+: each labelled sequence's first frame is also a Neutral face
    label_pattern: str | None = None  # a regex reading each image's expression (and subject) from its file name
    affwild2_frame_step: int = 1  # Aff-Wild2: every n-th annotated frame of a video
    affwild2_task: str = "auto"  # Aff-Wild2: whose frames and split (layouts.affwild2)
    affectnet_unclassed_faces: bool = False  # AffectNet: None/Uncertain faces with valence/arousal kept, without class


class Reject(Exception):
    """Raised by a record's checks; the reader turns it into a Rejection."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# -- image checks ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    digest: str


def inspect_image(path: Path) -> ImageInfo:
    """Hash and fully decode an image (at reduced scale where the codec allows) to catch truncation and garbage."""
    if not path.is_file():
        raise Reject("image_missing", f"image file {path.name} is missing")
    if path.suffix.lower() in UNREAD_PHOTO_SUFFIXES:
        raise Reject("format_unsupported", f"{path.name}: {path.suffix[1:].upper()} photos are not read; convert it "
                                           "to JPEG or PNG")
    data = path.read_bytes()
    if not data:
        raise Reject("image_empty", f"image file {path.name} is empty (0 bytes)")
    if not register_photo_decoders() and path.suffix.lower() in HEIF_SUFFIXES:
        raise Reject("format_unsupported", f"{path.name}: {HEIF_MISSING}; or convert it to JPEG or PNG")
    try:
        with warnings.catch_warnings():  # Pillow warns from half its bomb limit on; a big photo of faces is no bomb
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        with img:
            width, height = img.size
            if width == 0 or height == 0:
                raise Reject("image_zero_size", f"image {path.name} has zero size ({width}x{height})")
            # JPEG draft mode decodes at 1/8 scale but still reads every entropy-coded byte: cheap and complete.
            img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            img.load()
    except Reject:
        raise
    except Image.DecompressionBombError as exc:
        raise Reject("image_too_large", f"image {path.name} is too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        raise Reject("not_an_image", f"{path.name} is not an image (no known image format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        kind = "image_truncated" if "truncat" in str(exc).lower() else "image_unreadable"
        raise Reject(kind, f"image {path.name} cannot be decoded ({one_line(exc)})") from None
    return ImageInfo(width, height, hashlib.blake2b(data, digest_size=10).hexdigest())


# -- label parsing ----------------------------------------------------------------------------------------------


def parse_expression(value: float | str, source: str) -> int:
    """An affectkit class id from an id (AffectNet's 8/9/10 rejected by kind) or a class name or synonym."""
    if isinstance(value, str):
        label = class_from_name(value)
        if label is not None:
            return label
        try:
            value = float(value)
        except ValueError:
            raise Reject("expression_invalid", f"{source}: expression {value!r} is neither 0..7 nor a class name") from None
    if not math.isfinite(value) or value != int(value):
        raise Reject("expression_invalid", f"{source}: expression {value!r} is not an integer class id")
    label = int(value)
    if label in AFFECTNET_NON_EXPRESSIONS:
        kind = AFFECTNET_NON_EXPRESSIONS[label]
        raise Reject(f"expression_{kind}", f"{source}: expression {label} ('{kind}' in AffectNet) is not one of the 8 classes")
    if not 0 <= label < len(CLASS_NAMES):
        raise Reject("expression_out_of_range", f"{source}: expression {label} is outside 0..7")
    return label


def affectnet_expression(value: float | str, source: str, options: ReadOptions) -> int:
    """``parse_expression`` of an AffectNet code; where ``options.affectnet_unclassed_faces``, None (8) and Uncertain
    (9) give NO_EXPRESSION, a face for the valence/arousal heads alone (``require_some_label`` then checks it has
    them)."""
    try:
        return parse_expression(value, source)
    except Reject as r:
        if options.affectnet_unclassed_faces and r.kind in ("expression_none", "expression_uncertain"):
            return NO_EXPRESSION
        raise


def require_some_label(label: int, valence: float, source: str) -> None:
    """A face with neither a class nor valence/arousal teaches nothing."""
    if label == NO_EXPRESSION and not math.isfinite(valence):
        raise Reject("unlabelled", f"{source}: no expression class (AffectNet's None or Uncertain) and no "
                                   "valence/arousal")


def parse_dimension(value: float, name: str, source: str) -> float:
    if value == VA_NOT_ANNOTATED:
        raise Reject(f"{name}_not_annotated", f"{source}: {name} is -2, AffectNet's 'not annotated' marker")
    if math.isnan(value):
        raise Reject(f"{name}_nan", f"{source}: {name} is NaN")
    if math.isinf(value):
        raise Reject(f"{name}_infinite", f"{source}: {name} is infinite")
    if not -1.0 <= value <= 1.0:
        raise Reject(f"{name}_out_of_range", f"{source}: {name} {value:g} is outside [-1, 1]")
    return float(value)


def optional_float(raw: str, name: str, source: str) -> float:
    raw = (raw or "").strip()
    if raw == "":
        return math.nan
    try:
        value = float(raw)
    except ValueError:
        raise Reject(f"{name}_invalid", f"{source}: {name} {raw!r} is not a number") from None
    if math.isnan(value):
        raise Reject(f"{name}_nan", f"{source}: {name} is NaN")
    return value


def parse_valence_arousal(raw_valence: str, raw_arousal: str, source: str) -> tuple[float, float]:
    """Both values, or NaN for both when neither is given (the record then trains the expression head only)."""
    va = [optional_float(raw, name, source) for raw, name in ((raw_valence, "valence"), (raw_arousal, "arousal"))]
    if all(math.isfinite(v) for v in va):
        return parse_dimension(va[0], "valence", source), parse_dimension(va[1], "arousal", source)
    if any(math.isfinite(v) for v in va):
        raise Reject("annotation_missing", f"{source}: valence and arousal must be given together")
    return math.nan, math.nan


def parse_split(raw: str, source: str) -> str | None:
    raw = (raw or "").strip().lower()
    if not raw:
        return None
    if raw not in SPLIT_ALIASES:
        raise Reject("split_invalid", f"{source}: split {raw!r} is not train, val or test")
    return SPLIT_ALIASES[raw]


# -- shared ---------------------------------------------------------------------------------------------------


def check_split_given_everywhere(path: Path, splits: Iterable[str | None]) -> None:
    """A split column filled for some rows only is a mistake to name, not a split to guess."""
    given = [s is not None for s in splits]
    if any(given) and not all(given):
        raise AffectkitError(f"{path}: the split column is filled for some rows and empty for others; fill all or "
                             "none.")


def natural_key(s: str) -> tuple:
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def natural_name_key(name: str) -> list[int | str]:
    """Sort key of a file name: its runs of digits compared as numbers (``frame_2`` before ``frame_10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_image_name(name: str) -> bool:
    """Whether a file of this name is a data set's image: one affectkit reads, or one it quarantines as a photo format
    it does not (JPEG XL, camera raw); hidden files are not."""
    return name.lower().endswith(IMAGE_SUFFIXES + UNREAD_PHOTO_SUFFIXES) and not name.startswith(".")


def image_files(root: Path) -> list[Path]:
    """Every image below ``root``, hidden folders left out, in natural order of their paths."""
    files = (f for f in root.rglob("*") if is_image_name(f.name) and f.is_file()
             and not any(part.startswith(".") for part in f.relative_to(root).parts))
    return sorted(files, key=lambda f: [natural_name_key(part) for part in f.relative_to(root).parts])


def split_in_name(name: str) -> str | None:
    """The split a word of ``name`` names (``train-00000-of-00001``, ``instances_val2017``, ``obj_train_data``)."""
    return next((SPLIT_ALIASES[w] for w in re.split(r"[^a-z]+", name.lower()) if w in SPLIT_ALIASES), None)


def split_named(file: Path, root: Path) -> str | None:
    """The split a file's name gives (``train-00000-of-00001.parquet``, ``instances_val2017.json``), else the nearest
    folder between it and ``root`` named as one (``valid/_annotations.coco.json``)."""
    folders = file.parent.relative_to(root).parts if file != root else ()
    return next((split for name in (file.stem, *reversed(folders)) if (split := split_in_name(name))), None)


def split_folder_rank(name: str) -> int:
    """Where a split folder's split comes among train, val, test: the order such folders are listed in."""
    return ("train", "val", "test").index(SPLIT_ALIASES[name.lower()])


def frame_files(folder: Path) -> list[Path]:
    """The images directly inside ``folder``, in the natural order of their names (frame 2 before frame 10): a clip
    or a sequence given as a folder of its frames."""
    files = (f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
             and not f.name.startswith("."))
    return sorted(files, key=lambda f: natural_name_key(f.name))


def listed_path(raw: str, base: Path, moved: str | None = None) -> Path:
    """A file a CSV lists: absolute, or relative to ``base`` (the CSV's folder). A path written on Windows
    (``images\\0001.jpg``) has its backslashes read as separators where the file is not found as written; one under
    ``moved`` (:func:`moved_prefix`) is read from under ``base`` where it is not found as written."""
    path = Path(raw) if Path(raw).is_absolute() else base / raw
    if path.exists():
        return path
    posix = raw.replace("\\", "/")
    if moved is not None and posix.startswith(moved + "/"):
        return base / posix[len(moved) + 1:]
    if "\\" in raw:
        alternative = Path(posix) if Path(posix).is_absolute() else base / posix
        if alternative.exists():
            return alternative
    return path


def moved_prefix(raws: Iterable[str], base: Path) -> str | None:
    """The folder of another machine that ``base`` (the CSV's folder) stands for, where a CSV lists absolute paths
    written there (``C:\\Users\\me\\faces\\happy\\1.jpg``, ``/home/alice/faces/happy/1.jpg``) and its files came along
    with it: the longest part of the first such path missing here after which the rest is found under ``base``
    (``C:/Users/me/faces`` where ``base/happy/1.jpg`` exists). None where no listed absolute path is missing, or the
    first missing one is not under ``base`` either."""
    for raw in raws:
        posix = raw.replace("\\", "/")
        if not re.match(r"^(/|[A-Za-z]:/)", posix) or Path(raw).exists() or Path(posix).exists():
            continue
        parts = posix.split("/")
        for start in range(1, len(parts)):
            if parts[start] and (base / "/".join(parts[start:])).exists():  # a clip may be a folder of frames
                return "/".join(parts[:start])
        return None
    return None


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(line number from 1, line) of every non-blank line of a text file (a label list)."""
    data = path.read_bytes()
    try:
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise AffectkitError(f"{path} line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 text; a label list is "
                             "read as UTF-8 (save it so, or remove that line).") from None
    return [(i + 1, line) for i, line in enumerate(lines) if line.strip()]


def _first_line(path: Path) -> str:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return f.readline()
    except (OSError, UnicodeDecodeError):
        return ""


def _delimiter(header: str) -> str:
    return max((",", ";", "\t"), key=header.count) if any(d in header for d in ";\t") else ","


def csv_delimiter(path: Path) -> str:
    """The field separator of a CSV, read from its header: a comma, or the semicolon of spreadsheets saved in
    locales whose decimal mark is a comma, or a tab; whichever the header holds most of."""
    return _delimiter(_first_line(path))


def csv_header(path: Path) -> list[str]:
    """The lower-cased, stripped column names of a CSV's first line ([] when it has none or is not text)."""
    first = _first_line(path)
    return [c.strip().lower() for c in next(csv.reader([first], delimiter=_delimiter(first)), [])]


def _in_batches(pool: ThreadPoolExecutor, build: Callable, keys: Iterable, batch: int = 1024) -> Iterator:
    # Executor.map submits everything at once; batches keep a 290k-row CSV from sitting in memory as futures.
    keys = iter(keys)
    while chunk := list(itertools.islice(keys, batch)):
        yield from pool.map(build, chunk)


def collect(root: Path, layout: str, keys: Iterable,
            build: Callable[..., Record | Rejection | list[Record | Rejection]], total: int | None = None,
            **fields) -> DatasetIndex:
    """Run ``build`` on every key (lazily, in bounded batches) and sort the results into records and rejections; a
    key may give several (the frames of one labelled sequence, the faces of one photo)."""
    total = len(keys) if total is None and hasattr(keys, "__len__") else total
    records, rejected = [], []
    # Decoding releases the GIL, so threads overlap file reads and decodes.
    with ThreadPoolExecutor(max_workers=4) as pool:
        for result in reporter().track(_in_batches(pool, build, keys), total=total, description="Checking data"):
            for item in result if isinstance(result, list) else [result]:
                (rejected if isinstance(item, Rejection) else records).append(item)
    return DatasetIndex(root, layout, records, rejected, **fields)


def not_in_layout(path: Path, layout: str, needs: str) -> AffectkitError:
    return AffectkitError(f"{path} is not in the {LAYOUT_TITLES[layout]} layout: it needs {needs}.")
