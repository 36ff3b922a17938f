"""Hugging Face data sets as they are downloaded or saved: Parquet tables (a hub repository fetched with
``hf download``, ``data/train-00000-of-00001.parquet``) and Arrow tables (``Dataset.save_to_disk``, the ``datasets``
cache) of images and labels, read as the folder they are written out to.

The tables are written out once under the cache folder (``tables/<name>-<key>``, built as archives are unpacked):
each image a file, and a ``manifest.csv`` of their paths beside the tables' other columns, which the manifest layout
reads by the names it knows (label, emotion, valence, arousal, subject, ...). A ClassLabel column is written as its
class names, taken from the tables' Hugging Face features, so that no set's own class order is guessed; numbers
without names are left to ``class_map``, as in any manifest. A table of FER2013's pixel strings is written out as
FER2013's CSV, which the FER2013 layout reads with FER2013's own class order. A table's split is the one its file
names (``train-00000-of-00002.parquet``, ``validation/data-00000-of-00001.arrow``, ``fer2013-test.arrow``), unless
it has a split column of its own.
"""

from __future__ import annotations

import csv
import errno
import functools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from affectkit.data.archives import built_once, check_room, disk_full
from affectkit.data.layouts.fer2013 import FER2013_TO_AFFECTKIT
from affectkit.data.layouts.manifest import COLUMN_NAMES
from affectkit.data.records import SPLIT_ALIASES, class_from_name, split_named
from affectkit.errors import AffectkitError
from affectkit.progress import reporter

TABLE_SUFFIXES = (".parquet", ".arrow")
# Folders looked into below the one given: data/ (a hub download), default/train/ (the hub's Parquet conversion),
# default/0.0.0/<hash>/ (the datasets cache of one data set).
MAX_DEPTH = 3
DERIVED_TABLE = re.compile(r"^cache-[0-9a-f]+\.arrow$")  # what Dataset.map and .filter cache beside the tables
MANIFEST = "manifest.csv"
FER2013_CSV = "fer2013.csv"
PIXELS = "pixels"
FER2013_LABELS = ("emotion", "label", "labels")  # what a table of pixel strings calls FER2013's emotion column
FER2013_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"),
         (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))
BATCH_ROWS = 256


@dataclass(frozen=True)
class Table:
    """One table file and how it is written out."""

    path: Path
    split: str | None  # the split its file names, where it has no split column
    image: str  # the column holding the images (or FER2013's pixel strings)
    pixels: bool  # the images are FER2013 pixel strings
    class_names: dict[str, list[str]] = field(default_factory=dict)  # ClassLabel column -> its names
    columns: tuple[str, ...] = ()  # the other columns written beside each image


@dataclass(frozen=True)
class WrittenOut:
    folder: Path  # where the tables were written out to
    detail: str  # what they were, for the layout line: "3 Hugging Face Parquet tables"


def written_out(path: Path, cache_dir: Path) -> WrittenOut | None:
    """The folder that ``path``'s tables of images were written out to under ``cache_dir/tables`` (written on first
    use), or None where ``path`` holds no table of images."""
    tables = image_tables(path)
    if not tables:
        if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            raise AffectkitError(f"{path} holds no column of images (a Hugging Face Image feature, image bytes, or "
                                 "FER2013's pixel strings): it is not a data set's table.")
        return None
    if len({t.pixels for t in tables}) > 1:
        raise AffectkitError(f"{path} holds tables of images and tables of FER2013 pixel strings; give one set.")
    stem = (path.name[: -len(path.suffix)] if path.is_file() else path.name) or "data"
    folder = built_once(path, cache_dir / "tables", stem, [t.path for t in tables],
                        functools.partial(_write_out, tables), "written out")
    kinds = sorted({t.path.suffix[1:].capitalize() for t in tables})
    return WrittenOut(folder, f"{len(tables)} Hugging Face {' and '.join(kinds)} table{'s' * (len(tables) > 1)}")


def table_files(path: Path) -> list[Path]:
    """``path`` where it is a table file, or the table files in it up to ``MAX_DEPTH`` folders down, leaving out
    hidden folders (``.cache/huggingface`` of a download) and the datasets library's caches of derived tables."""
    if path.is_file():
        return [path] if path.suffix.lower() in TABLE_SUFFIXES else []
    found = []
    for folder, subfolders, files in os.walk(path):
        depth = len(Path(folder).relative_to(path).parts)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and depth < MAX_DEPTH)
        found += [Path(folder) / f for f in sorted(files)
                  if Path(f).suffix.lower() in TABLE_SUFFIXES and not DERIVED_TABLE.match(f)]
    return found


def image_tables(path: Path) -> list[Table]:
    """The tables of images in ``path``: those with an image column (a Hugging Face Image feature, image bytes, or
    FER2013's pixels, as strings or lists of numbers); the others (a table of statistics beside them) are left out."""
    tables = [_table(file, path) for file in table_files(path)]
    return [t for t in tables if t is not None]


def _table(file: Path, root: Path) -> Table | None:
    import pyarrow as pa

    schema = _schema(file)
    features = _features(schema, file)
    image = _image_column(schema, features)
    if image is None:
        return None
    pixels = image == PIXELS and image not in _typed(features, "Image")
    names = {name: [str(n) for n in features[name]["names"]] for name in _typed(features, "ClassLabel")
             if features[name].get("names")}
    scalar = (pa.types.is_integer, pa.types.is_floating, pa.types.is_string, pa.types.is_large_string,
              pa.types.is_boolean)
    columns = tuple(f.name for f in schema if f.name != image and any(test(f.type) for test in scalar))
    has_split = any(c.strip().lower() in COLUMN_NAMES["split"] for c in columns)
    if pixels:
        _check_fer2013_classes(file, columns, names)
    return Table(file, None if has_split else split_named(file, root), image, pixels, {} if pixels else names, columns)


def _check_fer2013_classes(file: Path, columns: tuple[str, ...], names: dict[str, list[str]]) -> None:
    """A table of pixel strings is read as FER2013's CSV: its classes must be FER2013's, in FER2013's order."""
    label = next((c for c in columns if c.lower() in FER2013_LABELS), None)
    if label is None:
        raise AffectkitError(f"{file} holds FER2013's pixel strings but no emotion column (it has "
                             f"{', '.join(columns) or 'none'}).")
    given = names.get(label)
    if given is not None and [class_from_name(n) for n in given] != [FER2013_TO_AFFECTKIT[i] for i in range(7)]:
        raise AffectkitError(f"{file}: column {label} names its classes {', '.join(given)}; a table of pixel strings "
                             "is read as FER2013's, whose classes are angry, disgust, fear, happy, sad, surprise, "
                             "neutral in that order.")


def _schema(file: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if file.suffix.lower() == ".parquet":
            return pq.read_schema(file)
        return _arrow_reader(file).schema
    except (pa.ArrowException, OSError) as exc:
        raise AffectkitError(f"{file} is not a readable {file.suffix[1:].capitalize()} table ({exc}); it is damaged "
                             "or incomplete: download it again.") from None


def _arrow_reader(file: Path):
    """Arrow's stream format (what ``datasets`` writes), else its file format."""
    import pyarrow as pa

    try:
        return pa.ipc.open_stream(pa.memory_map(str(file)))
    except pa.ArrowInvalid:
        return pa.ipc.open_file(pa.memory_map(str(file)))


def _features(schema, file: Path) -> dict:
    """The Hugging Face features the table's schema carries, else those of a ``dataset_info.json`` beside it."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        if raw is not None:
            features = json.loads(raw).get("info", {}).get("features")
        elif (file.parent / "dataset_info.json").is_file():
            features = json.loads((file.parent / "dataset_info.json").read_text()).get("features")
        else:
            features = None
    except (ValueError, AttributeError):
        features = None
    return features if isinstance(features, dict) else {}


def _typed(features: dict, kind: str) -> list[str]:
    """The columns of a Hugging Face feature type (Image, ClassLabel)."""
    return [name for name, f in features.items() if isinstance(f, dict) and f.get("_type") == kind]


def _image_column(schema, features: dict) -> str | None:
    import pyarrow as pa

    typed = _typed(features, "Image")
    if typed:
        return typed[0]
    for f in schema:
        if pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0:
            return f.name
    for f in schema:
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            return f.name
    names = {f.name: f.type for f in schema}
    kind = names.get(PIXELS)
    if kind is not None and (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                             or (pa.types.is_list(kind) and pa.types.is_integer(kind.value_type))):
        return PIXELS
    return None


def _batches(file: Path) -> Iterator:
    import pyarrow.parquet as pq

    if file.suffix.lower() == ".parquet":
        yield from pq.ParquetFile(file).iter_batches(batch_size=BATCH_ROWS)
    else:
        yield from _arrow_reader(file)


def _rows(file: Path) -> int:
    import pyarrow.parquet as pq

    if file.suffix.lower() == ".parquet":
        return pq.ParquetFile(file).metadata.num_rows
    return _arrow_reader(file).read_all().num_rows


def _write_out(tables: list[Table], source: Path, folder: Path) -> int:
    """Each table's images as files under ``folder/images`` and its rows in ``folder/manifest.csv`` (or the rows of
    FER2013 pixel strings in ``folder/fer2013.csv``); the number of rows written."""
    import pyarrow as pa

    total = sum(_rows(t.path) for t in tables)
    check_room(source, folder, sum(t.path.stat().st_size for t in tables), "holds tables of")
    rows = _fer2013_rows(tables) if tables[0].pixels else _image_rows(tables, folder)
    header: list[str] = []
    written = []
    try:
        for row in reporter().track(rows, total=total, description=f"Writing out {source.name}"):
            header += [k for k in row if k not in header]
            written.append(row)
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise AffectkitError(f"{source} could not be written out: {disk_full(exc)}") from None
        raise AffectkitError(f"{source} could not be read whole ({exc}); a table is damaged or incomplete: "
                             "download it again.") from None
    with open(folder / (FER2013_CSV if tables[0].pixels else MANIFEST), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, header, restval="")
        writer.writeheader()
        writer.writerows(written)
    return len(written)


def _cells(table: Table, row: dict) -> dict[str, str]:
    """The row's columns other than the image as CSV cells: a ClassLabel as its class name (empty for HF's -1, no
    label), a column a manifest would read as its path under ``source_<name>``."""
    cells = {}
    for column in table.columns:
        value = row[column]
        names = table.class_names.get(column)
        if names is not None and isinstance(value, int):
            value = names[value] if 0 <= value < len(names) else None
        key = f"source_{column}" if column.strip().lower() in COLUMN_NAMES["path"] else column
        cells[key] = "" if value is None else str(value)
    if table.split is not None:
        cells["split"] = table.split
    return cells


def _image_rows(tables: list[Table], folder: Path) -> Iterator[dict[str, str]]:
    for number, table in enumerate(tables):
        images = folder / "images" / f"{number:03d}-{table.path.stem}"
        images.mkdir(parents=True)
        used: set[str] = set()
        index = 0
        for batch in _batches(table.path):
            for row in batch.to_pylist():
                yield {"path": _write_image(row[table.image], images, index, used, table.path), **_cells(table, row)}
                index += 1


def _write_image(value, images: Path, index: int, used: set[str], table: Path) -> str:
    """The image's path in the manifest: a file written from its bytes (named as the table names it, else by its row),
    or the file the table points to (which the manifest's reading finds, or reports missing)."""
    data, named = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (value, None)
    if not data:
        return str(table.parent / named) if named else f"{table.name} row {index + 1} holds no image"
    name = PurePath(named.replace("\\", "/")).name if named else ""
    if not name or name in used or name.startswith("."):
        name = f"{index:06d}{PurePath(name).suffix.lower() if name else _suffix(data)}"
    used.add(name)
    (images / name).write_bytes(data)
    return str((images / name).relative_to(images.parent.parent))


def _suffix(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for magic, suffix in MAGIC if data.startswith(magic)), ".bin")


def _fer2013_rows(tables: list[Table]) -> Iterator[dict[str, str]]:
    """FER2013's columns as the tables hold them, a table's split as FER2013's Usage where it has none."""
    for table in tables:
        for batch in _batches(table.path):
            for row in batch.to_pylist():
                pixels = row[PIXELS] or ""
                pixels = pixels if isinstance(pixels, str) else " ".join(map(str, pixels))
                cells = {PIXELS: pixels, **_cells(table, row)}
                label = next(c for c in table.columns if c.lower() in FER2013_LABELS)
                cells["emotion"] = cells.pop(label)
                split = next((c for c in cells if c.lower() in COLUMN_NAMES["split"]), None)
                if split is not None and split.lower() != "usage":  # FER2013's CSV gives its split as Usage
                    given = cells.pop(split)
                    cells["Usage"] = FER2013_USAGE.get(SPLIT_ALIASES.get(given.strip().lower(), ""), given)
                yield cells
