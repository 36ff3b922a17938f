"""Another tool's predictions, read from a CSV, for ``affectkit compare --predictions``: deepface, fer, py-feat,
HSEmotion or a model of your own scored on exactly the faces an affectkit model is, face by face.

Each row names an image (a column ``file``, ``path``, ``image``, ``filename``, ``image_path`` or ``id``: its path,
absolute or relative to the working folder or to the CSV, its path inside the data set, its name alone where that
is unique, or affectkit's face id) and gives its class: a column ``expression`` (or ``emotion``, ``label``,
``prediction``, ``predicted``, ``pred``, ``class``, ``dominant_emotion``) holding a class name or synonym
(``happy``, ``happiness``, ``angry``) or affectkit's class id 0-7, or one score column per class, named by class
(``p_Happy`` as ``affectkit predict`` writes, ``happy`` as fer, ``happiness`` as py-feat), whose largest wins.
Rows for images outside the compared faces are passed over; a compared face without a row, or with two, is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from affectkit.data.records import Record, Reject, class_from_name, csv_delimiter, parse_expression
from affectkit.errors import AffectkitError

IMAGE_COLUMNS = ("file", "path", "image", "filename", "image_path", "id")
CLASS_COLUMNS = ("expression", "emotion", "label", "prediction", "predicted", "pred", "class", "dominant_emotion")


def _column(table: pd.DataFrame, wanted: tuple[str, ...]) -> str | None:
    by_name = {str(column).strip().lower(): column for column in table.columns}
    return next((by_name[name] for name in wanted if name in by_name), None)


def _score_columns(table: pd.DataFrame) -> dict[int, str]:
    """Class id -> the column scoring it (``p_Happy``, ``happy``, ``happiness``), where the table has two such
    columns or more whose cells are numbers."""
    found: dict[int, str] = {}
    for column in table.columns:
        label = class_from_name(str(column).strip().lower().removeprefix("p_"))
        numbers = pd.to_numeric(table[column], errors="coerce")
        if label is not None and label not in found and numbers.notna().any():
            found[label] = column
    return found if len(found) >= 2 else {}


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


def read_predictions(csv: Path, faces: list[Record], root: Path) -> np.ndarray:
    """Each of ``faces``' class as ``csv`` predicts it (affectkit class ids, in the order of ``faces``); ``root``:
    the data set's folder, against which a row may give a face's path."""
    csv = Path(csv)
    if not csv.is_file():
        raise AffectkitError(f"--predictions {csv}: no such file.")
    delimiter = csv_delimiter(csv)
    try:
        table = pd.read_csv(csv, sep=delimiter, encoding="utf-8-sig", dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AffectkitError(f"{csv}: not a readable CSV ({exc}).") from None
    image = _column(table, IMAGE_COLUMNS)
    if image is None:
        raise AffectkitError(f"{csv}: no column names the image (one of {', '.join(IMAGE_COLUMNS)}); its columns are "
                             f"{', '.join(map(str, table.columns))}.")
    if delimiter == ";":  # a spreadsheet saved where the decimal mark is a comma: a score of 0,9
        others = table.columns.drop(image)
        table[others] = table[others].apply(lambda column: column.str.replace(",", ".", regex=False))
    scores = _score_columns(table)
    label = None if scores else _column(table, CLASS_COLUMNS)
    if not scores and label is None:
        raise AffectkitError(f"{csv}: no column gives the class (one of {', '.join(CLASS_COLUMNS)}, or a score column "
                             "per class such as p_Happy or happy).")
    keys, folders = _face_keys(faces, root.resolve()), (Path.cwd(), csv.parent.resolve())
    predicted = np.full(len(faces), -1)
    for line, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        face = _face_of(str(row[image]), keys, folders) if pd.notna(row[image]) else None
        if face is None:
            continue
        if predicted[face] >= 0:
            raise AffectkitError(f"{csv}, line {line}: a second row for {faces[face].image_path.name} (face "
                                 f"{faces[face].id}); give one row per face.")
        predicted[face] = _row_class(row, scores, label, f"{csv}, line {line}")
    missing = np.flatnonzero(predicted < 0)
    if len(missing):
        shown = ", ".join(str(faces[i].image_path) for i in missing[:3])
        raise AffectkitError(f"{csv} has no row for {len(missing)} of the {len(faces)} faces compared (such as "
                             f"{shown}): it must predict every one of them.")
    return predicted


def _row_class(row: dict, scores: dict[int, str], label: str | None, where: str) -> int:
    if scores:
        values = {class_id: pd.to_numeric(row[column], errors="coerce") for class_id, column in scores.items()}
        if any(pd.isna(v) for v in values.values()):
            raise AffectkitError(f"{where}: a class score is missing or not a number.")
        return max(values, key=values.get)
    try:
        return parse_expression(row[label], where)
    except Reject as exc:
        raise AffectkitError(exc.reason) from None
