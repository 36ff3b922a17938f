"""A CSV manifest: columns ``path, expression`` and optional ``valence, arousal, split, subject`` (or ``group``).

Relative paths are resolved against the CSV's folder; ``expression`` is an id or a class name (synonyms accepted).
Records without valence/arousal keep NaN there and train the expression head only. A ``subject`` column keeps each
subject on one side of the split.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from affectkit.data.records import (
    DatasetIndex,
    ReadOptions,
    Record,
    Reject,
    Rejection,
    check_split_given_everywhere,
    collect,
    inspect_image,
    parse_expression,
    parse_split,
    parse_valence_arousal,
)
from affectkit.errors import AffectkitError

NAME = "manifest"
NEEDS = "manifest.csv, or a CSV file given directly, with columns path, expression[, valence, arousal, split, subject]"
GROUP_COLUMNS = ("subject", "group")


def find(path: Path, options: ReadOptions) -> Path | None:
    """Any CSV file given directly (it is checked for its columns when read), or DATA/manifest.csv."""
    if path.is_file():
        return path if path.suffix.lower() == ".csv" else None
    return path / "manifest.csv" if (path / "manifest.csv").is_file() else None


def read(csv_path: Path, options: ReadOptions) -> DatasetIndex:
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise AffectkitError(f"{csv_path} is not a readable CSV manifest ({exc}).") from None
    table.columns = [c.strip().lower() for c in table.columns]
    missing = {"path", "expression"} - set(table.columns)
    if missing:
        raise AffectkitError(
            f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}; a manifest needs path, expression "
            "and optionally valence, arousal, split, subject."
        )
    group_column = next((c for c in GROUP_COLUMNS if c in table.columns), None)
    base = csv_path.parent
    rows = table.to_dict("records")

    def build(i: int) -> Record | Rejection:
        row = rows[i]
        source = f"{csv_path.name} line {i + 2}"
        image = Path(row["path"])
        image = image if image.is_absolute() else base / image
        try:
            label = parse_expression(row["expression"], source)
            valence, arousal = parse_valence_arousal(row.get("valence", ""), row.get("arousal", ""), source)
            split = parse_split(row.get("split", ""), source)
            info = inspect_image(image)
        except Reject as r:
            return Rejection(row["path"], str(image), r.kind, r.reason)
        group = (row[group_column].strip() or None) if group_column else None
        return Record(row["path"], image, label, valence, arousal, None, info.width, info.height, info.digest, split,
                      group)

    index = collect(csv_path, NAME, range(len(rows)), build, detail=csv_path.name,
                    group_source=f"manifest column {group_column}" if group_column else None)
    check_split_given_everywhere(csv_path, (r.split for r in index.records))
    return index
