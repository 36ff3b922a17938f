"""A CSV manifest: columns ``path, expression`` and optional ``valence, arousal, split, subject`` (or ``group``).

Relative paths are resolved against the CSV's folder; ``expression`` is an id or a class name (synonyms accepted).
Columns may go by the names other tools and data set copies give them (``COLUMN_NAMES``: ``image`` or ``file`` for
``path``, ``label`` or ``emotion`` for ``expression``, ``usage`` for ``split``, ``person`` for ``subject``); the layout
line names each one so read. Class numbers in a column so named say nothing of their order (FER2013's 0 is Angry,
affectkit's Neutral), so they are read only through ``class_map``, which maps any expression value of the CSV, name or
number, to a class or to ``ignore``.
Records without valence/arousal keep NaN there and train the expression head only; records with valence/arousal and
an empty expression (or no ``expression`` column at all) train the valence/arousal heads only. A ``subject`` column
keeps each subject on one side of the split.

Split folders each holding one such CSV (``train/_classes.csv``, ``valid/_classes.csv``, ``test/_classes.csv``, as
Roboflow's classification export writes them, votes one-hot) are read together, each folder its split. A JSON Lines
file (one object a line) is read as a CSV of the same columns: Hugging Face's ImageFolder keeps its labels (and the
valence and arousal a folder of classes cannot hold) in ``metadata.jsonl`` or ``metadata.csv`` beside the images,
``file_name`` their path, at the top or in each split folder.

Annotators' votes (or probabilities) may be given in columns named after the classes (``neutral``, ``happy``, ...,
``contempt``; any of them, an empty cell is 0): each row's are scaled to sum to 1, its distribution, which training
uses where ``label_distribution`` is on. The ``expression`` column may then be left out or empty, and is the most
voted class; where it is given it must be one of the most voted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from affectkit.config import CLASS_NAMES, NO_EXPRESSION
from affectkit.data.layouts.class_folders import NUMBERED_HINT, folder_label, parse_class_map
from affectkit.data.records import (
    IGNORE,
    SPLIT_ALIASES,
    DatasetIndex,
    ReadOptions,
    Record,
    Reject,
    Rejection,
    check_split_given_everywhere,
    collect,
    csv_delimiter,
    csv_header,
    inspect_image,
    listed_path,
    moved_prefix,
    parse_expression,
    parse_split,
    parse_valence_arousal,
    split_folder_rank,
)
from affectkit.errors import AffectkitError

NAME = "manifest"
NEEDS = ("manifest.csv (or ImageFolder's metadata.csv / .jsonl), a CSV or JSON Lines file given directly, or one in "
         "each split folder, with columns path, expression (or "
         "votes per class, or valence and arousal)[, valence, arousal, split, subject]")
# Each column the manifest reads, by its own name first and then by the names others give it.
COLUMN_NAMES = {
    "path": ("path", "image", "image_path", "img", "img_path", "file", "filename", "file_name", "filepath",
             "file_path", "pth"),
    "expression": ("expression", "label", "labels", "emotion", "class", "category"),
    "split": ("split", "usage", "partition", "subset"),
    "subject": ("subject", "group", "person", "participant", "identity", "subject_id", "person_id", "participant_id"),
}
VOTE_COLUMNS = tuple(name.lower() for name in CLASS_NAMES)


def parse_votes(row: dict[str, str], columns: list[str], source: str) -> tuple[float, ...] | None:
    """The row's votes over the eight classes scaled to sum to 1; None where its vote cells are all empty or 0."""
    votes = [0.0] * len(CLASS_NAMES)
    for column in columns:
        cell = row[column].strip()
        try:
            value = float(cell) if cell else 0.0
        except ValueError:
            raise Reject("votes_invalid", f"{source}: {column} {cell!r} is not a number of votes") from None
        if not math.isfinite(value) or value < 0:
            raise Reject("votes_invalid", f"{source}: {column} {cell!r} is not a non-negative number of votes")
        votes[VOTE_COLUMNS.index(column)] = value
    total = sum(votes)
    return tuple(v / total for v in votes) if total > 0 else None


def _named_columns(columns: list[str], csv_path: Path) -> dict[str, str]:
    """Column name -> the manifest's own name, for each column read by another name; two candidates for one
    column, neither of them its own name, are refused rather than guessed between."""
    renamed = {}
    for own, names in COLUMN_NAMES.items():
        present = [c for c in names if c in columns]
        if own in present or not present:
            continue
        if len(present) > 1:
            raise AffectkitError(f"{csv_path}: the columns {' and '.join(present)} could each be its {own} column; "
                                 f"name the one to read {own}.")
        renamed[present[0]] = own
    return renamed


def _check_numbered_classes(values: pd.Series, column: str, mapping: dict[str, int | str], csv_path: Path) -> None:
    """Numbers in an expression column named otherwise (label, emotion) are a set's own class order, unknown here."""
    numbers = sorted({v.strip() for v in values if v.strip().lstrip("-").replace(".", "", 1).isdigit()} - set(mapping),
                     key=float)
    if numbers:
        raise AffectkitError(
            f"{csv_path}: column {column} holds class numbers ({', '.join(numbers[:10])}), whose order depends on the "
            f"set they come from; map each with class_map, e.g. --set class_map.{numbers[0]}=anger, or name the column "
            "expression where they are affectkit's own ids" + NUMBERED_HINT)


def _expression(given: str, mapping: dict[str, int | str], source: str) -> int:
    label = folder_label(given, mapping)
    return label if isinstance(label, int) else parse_expression(given, source)


def _label(row: dict[str, str], distribution: tuple[float, ...] | None, has_valence_arousal: bool,
           mapping: dict[str, int | str], source: str) -> int:
    """The row's class: its expression cell, which must be one of the most voted, or else the single most voted;
    NO_EXPRESSION for a row giving valence/arousal alone."""
    given = row.get("expression", "").strip()
    if distribution is None:
        if given:
            return _expression(given, mapping, source)
        if has_valence_arousal:
            return NO_EXPRESSION
        raise Reject("expression_missing", f"{source} has no expression, no votes and no valence/arousal")
    top = [c for c, share in enumerate(distribution) if share == max(distribution)]
    if not given:
        if len(top) > 1:
            raise Reject("votes_tied", f"{source}: {' and '.join(VOTE_COLUMNS[c] for c in top)} have the most votes; "
                                       "give its expression")
        return top[0]
    label = _expression(given, mapping, source)
    if label not in top:
        raise Reject("votes_disagree", f"{source}: expression {given!r} is not the most voted class "
                                       f"({' / '.join(VOTE_COLUMNS[c] for c in top)})")
    return label


MANIFEST_NAMES = ("manifest.csv", "metadata.csv", "metadata.jsonl")  # affectkit's own, Hugging Face ImageFolder's
SUFFIXES = (".csv", ".jsonl")


def _header(path: Path) -> list[str]:
    """The lower-cased column names of a CSV, or of a JSON Lines file's first object."""
    if path.suffix.lower() != ".jsonl":
        return csv_header(path)
    try:
        with open(path, encoding="utf-8") as f:
            first = json.loads(next((line for line in f if line.strip()), "{}"))
    except (ValueError, UnicodeDecodeError, OSError):
        return []
    return [str(k).strip().lower() for k in first] if isinstance(first, dict) else []


def _is_manifest(csv_path: Path) -> bool:
    """Whether a CSV's header names a path column and something that labels it."""
    header = set(_header(csv_path))
    labels = {*COLUMN_NAMES["expression"], *VOTE_COLUMNS, "valence"}
    return bool(header & set(COLUMN_NAMES["path"])) and bool(header & labels)


def _split_manifests(path: Path) -> list[Path]:
    """The one manifest CSV of each split folder of ``path``, where each of them holds one."""
    folders = sorted((d for d in path.iterdir() if d.is_dir() and d.name.lower() in SPLIT_ALIASES),
                     key=lambda d: (split_folder_rank(d.name), d.name))
    manifests = [[c for c in sorted(d.iterdir()) if c.suffix.lower() in SUFFIXES and c.is_file() and _is_manifest(c)]
                 for d in folders]
    return [m[0] for m in manifests] if folders and all(len(m) == 1 for m in manifests) else []


def find(path: Path, options: ReadOptions) -> Path | None:
    """Any CSV file given directly (it is checked for its columns when read), DATA/manifest.csv, or DATA itself
    where each of its split folders holds one manifest."""
    if path.is_file():
        return path if path.suffix.lower() in SUFFIXES else None
    found = next((path / name for name in MANIFEST_NAMES if (path / name).is_file()), None)
    if found is not None and (found.name == "manifest.csv" or _is_manifest(found)):
        return found
    return path if _split_manifests(path) else None


def read(found: Path, options: ReadOptions) -> DatasetIndex:
    if found.is_file():
        return _read_csv(found, options)
    parts = [_read_csv(csv_path, options, split=SPLIT_ALIASES[csv_path.parent.name.lower()])
             for csv_path in _split_manifests(found)]
    return DatasetIndex(found, NAME, [r for part in parts for r in part.records],
                        [r for part in parts for r in part.rejected],
                        detail=", ".join(f"{part.root.parent.name}/{part.detail}" for part in parts),
                        group_source=parts[0].group_source)


def _table(path: Path) -> tuple[pd.DataFrame, str]:
    """A manifest's rows as text cells ("" where empty), and its CSV field separator ("," for JSON Lines)."""
    if path.suffix.lower() == ".jsonl":
        try:
            table = pd.read_json(path, lines=True, dtype=False)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AffectkitError(f"{path} is not a readable JSON Lines manifest ({exc}).") from None
        cells = table.astype(object).where(table.notna(), "")
        return cells.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)), ","
    delimiter = csv_delimiter(path)
    try:
        return pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False), delimiter
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise AffectkitError(f"{path} is not a readable CSV manifest ({exc}).") from None


def _read_csv(csv_path: Path, options: ReadOptions, split: str | None = None) -> DatasetIndex:
    """One manifest; ``split``: the split of its split folder, for every row (its ids then name the folder)."""
    table, delimiter = _table(csv_path)
    table.columns = [c.strip().lower() for c in table.columns]
    renamed = _named_columns(list(table.columns), csv_path)
    table = table.rename(columns=renamed)
    mapping = parse_class_map(options.class_map)
    aliases = {own: name for name, own in renamed.items()}
    if "expression" in aliases:
        _check_numbered_classes(table["expression"], aliases["expression"], mapping, csv_path)
    vote_columns = [c for c in VOTE_COLUMNS if c in table.columns]
    if delimiter == ";":  # a spreadsheet saved where the decimal mark is a comma: valence 0,5
        for column in {"valence", "arousal", *vote_columns} & set(table.columns):
            table[column] = table[column].str.replace(",", ".", regex=False)
    labelled_without_expression = bool(vote_columns) or {"valence", "arousal"} <= set(table.columns)
    missing = {"path"} | ({"expression"} if not labelled_without_expression else set())
    missing -= set(table.columns)
    if missing:
        raise AffectkitError(
            f"{csv_path} lacks the column(s) {', '.join(sorted(missing))} (found: {', '.join(table.columns)}); a "
            "manifest needs path, expression (or votes in columns named after the classes, or valence and arousal) "
            "and optionally valence, arousal, split, subject; other names read: "
            + "; ".join(f"{own}: {', '.join(names[1:])}" for own, names in COLUMN_NAMES.items()) + "."
        )
    grouped = "subject" in table.columns
    base = csv_path.parent
    rows = table.to_dict("records")

    prefix = f"{csv_path.parent.name}/" if split else ""
    first_line = 1 if csv_path.suffix.lower() == ".jsonl" else 2  # of the rows, after a CSV's header
    moved = moved_prefix((row["path"] for row in rows), base)

    def build(i: int) -> Record | Rejection:
        row = rows[i]
        source = f"{prefix}{csv_path.name} line {i + first_line}"
        image = listed_path(row["path"], base, moved)
        if folder_label(row.get("expression", ""), mapping) == IGNORE:
            return []
        try:
            distribution = parse_votes(row, vote_columns, source)
            valence, arousal = parse_valence_arousal(row.get("valence", ""), row.get("arousal", ""), source)
            label = _label(row, distribution, math.isfinite(valence) and math.isfinite(arousal), mapping, source)
            row_split = split or parse_split(row.get("split", ""), source)
            info = inspect_image(image)
        except Reject as r:
            return Rejection(prefix + row["path"], str(image), r.kind, r.reason)
        group = (row["subject"].strip() or None) if grouped else None
        return Record(prefix + row["path"], image, label, valence, arousal, None, info.width, info.height, info.digest,
                      row_split, group, expression_distribution=distribution)

    detail = csv_path.name + (f"; votes in {', '.join(vote_columns)}" if vote_columns else "")
    detail += "".join(f"; column {name} read as {own}" for name, own in renamed.items())
    if moved is not None:
        detail += f"; paths under {moved} (not on this machine) read from under {base}"
    index = collect(csv_path, NAME, range(len(rows)), build, detail=detail,
                    group_source=f"manifest column {aliases.get('subject', 'subject')}" if grouped else None)
    check_split_given_everywhere(csv_path, (r.split for r in index.records))
    return index
