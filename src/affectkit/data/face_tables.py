"""Tables that name faces (a CSV or JSON Lines file of image paths, ids or file names with columns about each face):
how a row finds its face, and the attributes of faces (gender, age band, head pose ...) read from one, the data set's
own or its manifest, for scoring and describing groups of faces (``--by``).

A row names its image by a column ``file``, ``path``, ``image``, ``filename``, ``image_path`` (or another name a
manifest gives the path) or ``id``: its path, absolute or relative to the working folder or to the table, its path
inside the data set, its name alone where that is unique, or affectkit's face id. A face without a row, or with an
empty cell, is of no group by that attribute (:data:`NOT_GIVEN`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from affectkit.data.layouts import own_attributes
from affectkit.data.layouts.manifest import COLUMN_NAMES
from affectkit.data.records import DatasetIndex, Record, csv_delimiter
from affectkit.errors import AffectkitError

IMAGE_COLUMNS = tuple(dict.fromkeys(("file", "path", "image", "filename", "image_path", *COLUMN_NAMES["path"], "id")))
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl")
MANIFEST_NAMES = ("manifest.csv", "metadata.csv", "metadata.jsonl")
NOT_GIVEN = "(not given)"  # the group of faces the attribute table has no value for
# An attribute of more values is a measurement (an age in years, a head angle), not groups to score apart.
MAX_GROUPS = 50

if TYPE_CHECKING:
    from affectkit.data.datamodule import PreparedData


def attribute_file_stem(attribute: str) -> str:
    """``by_<attribute>`` with what a file name should not hold replaced: ``by_age_band`` for "age band"."""
    return "by_" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", attribute).strip("_") or "attribute")


def group_order(group: str) -> tuple:
    """Groups in the order of their names, numbers by their value (``2-9`` before ``10-19``), the faces without a
    value last."""
    parts = re.split(r"(\d+)", str(group))
    return (group == NOT_GIVEN, [(0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p])


def column_named(table: pd.DataFrame, wanted: tuple[str, ...]) -> str | None:
    """The first column of ``table`` named one of ``wanted`` (lower case), whatever its case and spaces."""
    by_name = {str(column).strip().lower(): column for column in table.columns}
    return next((by_name[name] for name in wanted if name in by_name), None)


def read_table(path: Path, option: str) -> pd.DataFrame:
    """``path`` (a CSV, or JSON Lines) as text cells, NaN where empty; ``option``: what gave it, for the errors."""
    path = Path(path)
    if not path.is_file():
        raise AffectkitError(f"{option} {path}: no such file.")
    try:
        if path.suffix.lower() == ".jsonl":
            table = pd.read_json(path, lines=True, dtype=False)
            return table.astype(object).where(table.notna(), np.nan).map(lambda v: v if pd.isna(v) else str(v))
        table = pd.read_csv(path, sep=csv_delimiter(path), encoding="utf-8-sig", dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise AffectkitError(f"{path}: not a readable {'JSON Lines file' if path.suffix == '.jsonl' else 'CSV'} "
                             f"({exc}).") from None
    return table


def image_column(table: pd.DataFrame, path: Path) -> str:
    """The column of ``table`` (read from ``path``) that names each row's image."""
    image = column_named(table, IMAGE_COLUMNS)
    if image is None:
        raise AffectkitError(f"{path}: no column names the image (one of {', '.join(IMAGE_COLUMNS)}); its columns "
                             f"are {', '.join(map(str, table.columns))}.")
    return image


def _face_keys(faces: list[Record], root: Path) -> dict[str, int]:
    """Every way a row may name a face (its id, its path, its path inside ``root``, its file name), each kept only
    where it names one face."""
    keys: dict[str, set[int]] = {}
    for i, face in enumerate(faces):
        path = face.image_path.resolve()
        names = {face.id, str(path), path.name}
        if path.is_relative_to(root):
            names.add(path.relative_to(root).as_posix())
        for name in names:
            keys.setdefault(name, set()).add(i)
    return {name: next(iter(found)) for name, found in keys.items() if len(found) == 1}


def _face_of(value: str, keys: dict[str, int], folders: tuple[Path, ...]) -> int | None:
    """The face a row's image names: as given, as a path from one of ``folders``, or by its file name."""
    value = value.strip().replace("\\", "/")  # a path written on Windows
    for name in (value, *(str((folder / value).resolve()) for folder in folders), Path(value).name):
        if name in keys:
            return keys[name]
    return None


def rows_of_faces(table: pd.DataFrame, image: str, faces: list[Record], root: Path,
                  path: Path) -> Iterator[tuple[int, int, dict]]:
    """Each row of ``table`` that names one of ``faces`` by its ``image`` column: its line in ``path``, the face's
    position in ``faces`` and the row; rows for other images are passed over."""
    keys, folders = _face_keys(faces, root.resolve()), (Path.cwd(), path.parent.resolve())
    for line, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        face = _face_of(str(row[image]), keys, folders) if pd.notna(row[image]) else None
        if face is not None:
            yield line, face, row


def attribute_table(data: Path, attributes: Path | None, index: DatasetIndex) -> tuple[pd.DataFrame, Path]:
    """The table of the faces' attributes and where it was read: ``attributes`` where given, else the data set's own
    (RAF-DB's manual annotation, read by its layout), else its manifest (``data`` given as a CSV or JSON Lines file, or
    a folder holding manifest.csv, metadata.csv or metadata.jsonl; Hugging Face tables' columns, in the manifest they
    are written out to)."""
    if attributes is not None:
        return read_table(Path(attributes), "--attributes"), Path(attributes)
    if (own := own_attributes(index.layout, index.root)) is not None:
        return own, index.root
    # What was given, then what was read: Hugging Face tables and archives are read where they were written out to,
    # and a manifest layout's root is its manifest.
    places = (Path(data), index.root)
    found = [path for path in places if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES]
    found += [folder / name for folder in places for name in MANIFEST_NAMES if (folder / name).is_file()]
    if found:
        return read_table(found[0], "--attributes"), found[0]
    raise AffectkitError(f"--by reads the faces' attributes from a table, and {data} has no manifest to hold them: "
                         "give --attributes FILE, a CSV with a column naming each image (file, path, image or id) and "
                         "a column for each attribute.")


def check_grouping(by: Sequence[str], attributes: Path | None) -> None:
    """Refuse a table of attributes given without an attribute to group by (it would be read for nothing)."""
    if attributes is not None and not by:
        raise AffectkitError(f"--attributes {attributes} is the table --by reads: name the attribute to group the "
                             "faces by with --by COLUMN.")


def face_attributes(data: Path, attributes: Path | None, by: Sequence[str],
                    prepared: PreparedData) -> dict[str, np.ndarray]:
    """Each attribute of ``by`` (:func:`attribute_table`, :func:`read_attributes`) for every face of ``prepared``,
    in its order; empty without ``by``."""
    check_grouping(by, attributes)
    if not by:
        return {}
    table, path = attribute_table(data, attributes, prepared.index)
    return read_attributes(table, path, by, prepared.records, prepared.index.root)


def read_attributes(table: pd.DataFrame, path: Path, attributes: Sequence[str], faces: list[Record],
                    root: Path) -> dict[str, np.ndarray]:
    """Each of ``attributes`` (columns of ``table``, read from ``path``, matched without regard to case) for each of
    ``faces``, in their order: its value as text, or :data:`NOT_GIVEN` where no row names the face or its cell is
    empty. A face named by two rows that disagree, a missing column, or a table that names none of the faces is
    refused."""
    image = image_column(table, path)
    columns = {attribute: column_named(table, (attribute.strip().lower(),)) for attribute in attributes}
    if missing := [attribute for attribute, column in columns.items() if column is None]:
        raise AffectkitError(f"{path} has no column {', '.join(map(repr, missing))} to group the faces by; its columns "
                             f"are {', '.join(map(str, table.columns))}.")
    values = {attribute: np.full(len(faces), NOT_GIVEN, dtype=object) for attribute in attributes}
    named = np.zeros(len(faces), dtype=bool)
    for line, face, row in rows_of_faces(table, image, faces, root, path):
        for attribute, column in columns.items():
            value = NOT_GIVEN if pd.isna(row[column]) or not str(row[column]).strip() else str(row[column]).strip()
            if named[face] and values[attribute][face] != value:
                raise AffectkitError(f"{path}, line {line}: a second row for {faces[face].image_path.name} (face "
                                     f"{faces[face].id}) with another {attribute} ({value!r}, not "
                                     f"{values[attribute][face]!r}).")
            values[attribute][face] = value
        named[face] = True
    for attribute, found in values.items():
        groups = sorted(set(found) - {NOT_GIVEN}, key=group_order)
        if len(groups) > MAX_GROUPS:
            raise AffectkitError(f"{path}: {attribute} has {len(groups)} values ({', '.join(groups[:3])}, ...), too "
                                 f"many groups to score apart (at most {MAX_GROUPS}): give a column of bands, such as "
                                 "ages 0-19, 20-39, 40-69, 70+.")
    if not named.any():
        example = str(table[image].dropna().iloc[0]) if table[image].notna().any() else "nothing"
        raise AffectkitError(f"{path}: no row names one of the {len(faces)} faces read (its {image} column gives "
                             f"{example!r}, for one): name each image by its path, its path inside the data set, "
                             "its file name or affectkit's face id.")
    return values


__all__ = ["IMAGE_COLUMNS", "NOT_GIVEN", "attribute_file_stem", "attribute_table", "check_grouping", "column_named",
           "face_attributes", "group_order", "image_column", "read_attributes", "read_table", "rows_of_faces"]
