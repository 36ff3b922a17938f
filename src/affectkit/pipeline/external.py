"""Another tool's predictions, read from a CSV, for ``affectkit compare --predictions``: deepface, fer, py-feat,
HSEmotion or a model of your own scored on exactly the faces an affectkit model is, face by face.

Each row names an image (a column ``file``, ``path``, ``image``, ``filename``, ``image_path`` or ``id``: its path,
absolute or relative to the working folder or to the CSV, its path inside the data set, its name alone where that
is unique, or affectkit's face id) and gives its class: a column ``expression`` (or ``emotion``, ``label``,
``prediction``, ``predicted``, ``pred``, ``class``, ``dominant_emotion``) holding a class name or synonym
(``happy``, ``happiness``, ``angry``) or affectkit's class id 0-7, or one score column per class, named by class
(``p_Happy`` as ``affectkit predict`` writes, ``happy`` as fer, ``happiness`` as py-feat), whose largest wins.
Rows for images outside the compared faces are passed over; a compared face without a row, or with two, is refused.
How a row finds its face: :mod:`affectkit.data.face_tables`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from affectkit.data.face_tables import column_named, image_column, read_table, rows_of_faces
from affectkit.data.records import Record, Reject, class_from_name, csv_delimiter, parse_expression
from affectkit.errors import AffectkitError

CLASS_COLUMNS = ("expression", "emotion", "label", "prediction", "predicted", "pred", "class", "dominant_emotion")


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


def read_predictions(csv: Path, faces: list[Record], root: Path) -> np.ndarray:
    """Each of ``faces``' class as ``csv`` predicts it (affectkit class ids, in the order of ``faces``); ``root``:
    the data set's folder, against which a row may give a face's path."""
    csv = Path(csv)
    table = read_table(csv, "--predictions")
    image = image_column(table, csv)
    # A spreadsheet saved where the decimal mark is a comma: a score of 0,9.
    if csv.suffix.lower() != ".jsonl" and csv_delimiter(csv) == ";":
        others = table.columns.drop(image)
        table[others] = table[others].apply(lambda column: column.str.replace(",", ".", regex=False))
    scores = _score_columns(table)
    label = None if scores else column_named(table, CLASS_COLUMNS)
    if not scores and label is None:
        raise AffectkitError(f"{csv}: no column gives the class (one of {', '.join(CLASS_COLUMNS)}, or a score column "
                             "per class such as p_Happy or happy).")
    predicted = np.full(len(faces), -1)
    for line, face, row in rows_of_faces(table, image, faces, root, csv):
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
