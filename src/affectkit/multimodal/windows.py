"""Sessions with continuous annotations -> a multimodal manifest of time windows.

Multimodal affect corpora (RECOLA, SEWA, AVEC's, a lab's own) record a session as a video, its sound, its body
signals, and ratings over time: valence and arousal every 40 ms, say. :func:`window_manifest` cuts each session into
windows of ``window`` seconds every ``hop`` seconds, labels each with the mean of the ratings inside it (the most
frequent expression, where ratings name one), and writes the manifest `affectkit fuse` reads.

The sessions CSV has one row per session: ``labels`` (a CSV with a ``time`` column in seconds and any of
``valence``, ``arousal``, ``expression``), the session's ``face`` video, ``audio`` and ``physio`` files (any of them),
and optionally ``subject`` and ``split``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from affectkit.atomic import atomic_path
from affectkit.data.records import Reject, listed_path, moved_prefix, parse_expression
from affectkit.errors import AffectkitError
from affectkit.multimodal.manifest import GROUP_COLUMNS, MODALITIES
from affectkit.multimodal.signals import TIME_COLUMNS
from affectkit.progress import reporter

LABELS = ("valence", "arousal", "expression")


def _ratings(path: Path, source: str) -> pd.DataFrame:
    """A session's ratings: ``time`` and the label columns it has, checked."""
    if not path.is_file():
        raise AffectkitError(f"{source}: labels file {path} is missing.")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise AffectkitError(f"{source}: labels file {path.name} is not a readable CSV ({exc}).") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    time_column = next((c for c in TIME_COLUMNS if c in table.columns), None)
    present = [c for c in LABELS if c in table.columns]
    if time_column is None or not present:
        raise AffectkitError(f"{source}: labels file {path.name} needs a time column (seconds) and any of "
                             f"{', '.join(LABELS)}; it has {', '.join(table.columns)}.")
    ratings = table[[time_column, *present]].rename(columns={time_column: "time"})
    for column in ("time", *(c for c in present if c != "expression")):
        values = pd.to_numeric(ratings[column], errors="coerce")
        bad = values.isna() | (~values.between(-1, 1) if column != "time" else False)
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise AffectkitError(f"{source}: labels file {path.name} line {line}: {column} "
                                 f"{ratings[column].iloc[line - 2]!r} is not " + (
                                     "a number" if column == "time" else "a number in [-1, 1]") + ".")
        ratings[column] = values
    if "expression" in present:
        try:
            ratings["expression"] = [parse_expression(v, f"{path.name} line {i + 2}")
                                     for i, v in enumerate(ratings["expression"].astype(str))]
        except Reject as r:
            raise AffectkitError(f"{source}: {r.reason}.") from None
    if not ratings["time"].is_monotonic_increasing:
        raise AffectkitError(f"{source}: labels file {path.name}: the time column must increase.")
    return ratings


def _session_windows(ratings: pd.DataFrame, window: float, hop: float,
                     delay: float = 0.0) -> list[dict[str, float | int | str]]:
    """Each window's start, end and labels, read from the ratings ``delay`` seconds later (a rater reacts to what
    they see with a lag); windows without any rating there are left out."""
    time = ratings["time"].to_numpy()
    step = float(np.median(np.diff(time))) if len(time) > 1 else 0.0
    span_end = time[-1] + step  # the last rating holds until the next would have come
    rows = []
    for start in np.arange(max(0.0, time[0] - delay), span_end - delay - window + 1e-9, hop):
        inside = ratings[(time >= start + delay) & (time < start + delay + window)]
        if inside.empty:
            continue
        row: dict[str, float | int | str] = {"start": round(float(start), 6), "end": round(float(start + window), 6)}
        for column in ("valence", "arousal"):
            if column in inside:
                row[column] = float(inside[column].mean())
        if "expression" in inside:
            row["expression"] = int(inside["expression"].mode().iloc[0])
        rows.append(row)
    return rows


def window_manifest(sessions: str | Path, out: str | Path, window: float = 4.0, hop: float = 2.0,
                    delay: float = 0.0) -> tuple[Path, int]:
    """Write ``out``, a manifest with one row per window of every session; returns its path and the window count.
    ``delay``: the raters' reaction lag in seconds; each window is labelled with the ratings that far after it."""
    sessions, out = Path(sessions), Path(out)
    if window <= 0 or hop <= 0 or delay < 0:
        raise AffectkitError("--window and --hop must be positive, and --delay not negative (seconds).")
    if not sessions.is_file():
        raise AffectkitError(f"{sessions} does not exist: give a sessions CSV (columns labels, face, audio, physio, "
                             "subject, split).")
    table = pd.read_csv(sessions, dtype=str, keep_default_na=False)
    table.columns = [c.strip().lower() for c in table.columns]
    modalities = [m for m in MODALITIES if m in table.columns]
    if "labels" not in table.columns or not modalities:
        raise AffectkitError(f"{sessions} needs a labels column and any of {', '.join(MODALITIES)}; it has "
                             f"{', '.join(table.columns)}.")
    group_column = next((c for c in GROUP_COLUMNS if c in table.columns), None)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A sessions CSV written on another machine lists its paths there; its files came along beside it.
    moved = moved_prefix((raw for c in ("labels", *modalities) for raw in table[c] if raw.strip()), sessions.parent)
    if moved is not None:
        reporter().note(f"{sessions.name}: paths under {moved} (not on this machine) read from under "
                        f"{sessions.parent}")

    def relocated(raw: str) -> str:
        """A sessions-CSV path, as the new manifest (in another folder, maybe) must write it."""
        if not raw.strip():
            return ""
        path = listed_path(raw, sessions.parent, moved)
        return os.path.relpath(path.resolve(), out.parent.resolve())

    rows = []
    for i, session in enumerate(table.to_dict("records")):
        source = f"{sessions.name} line {i + 2}"
        labels = listed_path(session["labels"], sessions.parent, moved)
        files = {m: relocated(session[m]) for m in modalities}
        extra = {"subject": session[group_column]} if group_column else {}
        if "split" in table.columns:
            extra["split"] = session["split"]
        rows += [{**files, **w, **extra} for w in _session_windows(_ratings(labels, source), window, hop, delay)]
    if not rows:
        raise AffectkitError(f"{sessions}: no session is as long as one window of {window:g} s.")
    labelled = [c for c in ("expression", "valence", "arousal") if any(c in r for r in rows)]
    columns = [*modalities, "start", "end", *labelled, *(c for c in ("subject", "split") if c in rows[0])]
    with atomic_path(out) as tmp:
        pd.DataFrame(rows).reindex(columns=columns).to_csv(tmp, index=False, float_format="%.6f")
    return out, len(rows)
