"""A CSV manifest: columns ``path, expression`` and optional ``valence, arousal, split, subject`` (or ``group``).

Relative paths are resolved against the CSV's folder; ``expression`` is an id or a class name (synonyms accepted).
Records without valence/arousal keep NaN there and train the expression head only; records with valence/arousal and
an empty expression (or no ``expression`` column at all) train the valence/arousal heads only. A ``subject`` column
keeps each subject on one side of the split.

Annotators' votes (or probabilities) may be given in columns named after the classes (``neutral``, ``happy``, ...,
``contempt``; any of them, an empty cell is 0): each row's are scaled to sum to 1, its distribution, which training
uses where ``label_distribution`` is on. The ``expression`` column may then be left out or empty, and is the most
voted class; where it is given it must be one of the most voted.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from affectkit.config import CLASS_NAMES, NO_EXPRESSION
from affectkit.data.records import (
    DatasetIndex,
    ReadOptions,
    Record,
    Reject,
    Rejection,
    check_split_given_everywhere,
    collect,
    csv_delimiter,
    inspect_image,
    listed_path,
    parse_expression,
    parse_split,
    parse_valence_arousal,
)
from affectkit.errors import AffectkitError

NAME = "manifest"
NEEDS = ("manifest.csv, or a CSV file given directly, with columns path, expression (or votes per class, or valence "
         "and arousal)[, valence, arousal, split, subject]")
GROUP_COLUMNS = ("subject", "group")
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


def _label(row: dict[str, str], distribution: tuple[float, ...] | None, has_valence_arousal: bool,
           source: str) -> int:
    """The row's class: its expression cell, which must be one of the most voted, or else the single most voted;
    NO_EXPRESSION for a row giving valence/arousal alone."""
    given = row.get("expression", "").strip()
    if distribution is None:
        if given:
            return parse_expression(given, source)
        if has_valence_arousal:
            return NO_EXPRESSION
        raise Reject("expression_missing", f"{source} has no expression, no votes and no valence/arousal")
    top = [c for c, share in enumerate(distribution) if share == max(distribution)]
    if not given:
        if len(top) > 1:
            raise Reject("votes_tied", f"{source}: {' and '.join(VOTE_COLUMNS[c] for c in top)} have the most votes; "
                                       "give its expression")
        return top[0]
    label = parse_expression(given, source)
    if label not in top:
        raise Reject("votes_disagree", f"{source}: expression {given!r} is not the most voted class "
                                       f"({' / '.join(VOTE_COLUMNS[c] for c in top)})")
    return label


def find(path: Path, options: ReadOptions) -> Path | None:
    """Any CSV file given directly (it is checked for its columns when read), or DATA/manifest.csv."""
    if path.is_file():
        return path if path.suffix.lower() == ".csv" else None
    return path / "manifest.csv" if (path / "manifest.csv").is_file() else None


def read(csv_path: Path, options: ReadOptions) -> DatasetIndex:
    delimiter = csv_delimiter(csv_path)
    try:
        table = pd.read_csv(csv_path, sep=delimiter, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise AffectkitError(f"{csv_path} is not a readable CSV manifest ({exc}).") from None
    table.columns = [c.strip().lower() for c in table.columns]
    vote_columns = [c for c in VOTE_COLUMNS if c in table.columns]
    if delimiter == ";":  # a spreadsheet saved where the decimal mark is a comma: valence 0,5
        for column in {"valence", "arousal", *vote_columns} & set(table.columns):
            table[column] = table[column].str.replace(",", ".", regex=False)
    labelled_without_expression = bool(vote_columns) or {"valence", "arousal"} <= set(table.columns)
    missing = {"path"} | ({"expression"} if not labelled_without_expression else set())
    missing -= set(table.columns)
    if missing:
        raise AffectkitError(
            f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}; a manifest needs path, expression (or "
            "votes in columns named after the classes, or valence and arousal) and optionally valence, arousal, "
            "split, subject."
        )
    group_column = next((c for c in GROUP_COLUMNS if c in table.columns), None)
    base = csv_path.parent
    rows = table.to_dict("records")

    def build(i: int) -> Record | Rejection:
        row = rows[i]
        source = f"{csv_path.name} line {i + 2}"
        image = listed_path(row["path"], base)
        try:
            distribution = parse_votes(row, vote_columns, source)
            valence, arousal = parse_valence_arousal(row.get("valence", ""), row.get("arousal", ""), source)
            label = _label(row, distribution, math.isfinite(valence) and math.isfinite(arousal), source)
            split = parse_split(row.get("split", ""), source)
            info = inspect_image(image)
        except Reject as r:
            return Rejection(row["path"], str(image), r.kind, r.reason)
        group = (row[group_column].strip() or None) if group_column else None
        return Record(row["path"], image, label, valence, arousal, None, info.width, info.height, info.digest, split,
                      group, expression_distribution=distribution)

    detail = csv_path.name + (f"; votes in {', '.join(vote_columns)}" if vote_columns else "")
    index = collect(csv_path, NAME, range(len(rows)), build, detail=detail,
                    group_source=f"manifest column {group_column}" if group_column else None)
    check_split_given_everywhere(csv_path, (r.split for r in index.records))
    return index
