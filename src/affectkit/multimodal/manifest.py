"""A multimodal manifest: one CSV row per sample (a clip, a trial or a time window) naming what each modality
recorded of it, and its labels.

Columns, case-insensitive; at least one modality column and at least one target:

- ``face``: an image of the face, or a video (or a folder of its frames) whose frames inside the window are read;
- ``audio``: a sound file (WAV, FLAC, OGG: what libsndfile reads);
- ``physio``: a CSV of physiological signals: a ``time`` column in seconds and one column per channel, its kind read
  from its name (``eda``/``gsr``, ``ecg``, ``ppg``/``bvp``, ``rsp``/``resp``; any other is summarised as it is);
- ``start``, ``end``: the window, in seconds, inside the face video, the audio and the physio files (empty: whole
  files), so one long recording per session can serve many rows;
- ``expression`` (an id or a class name), ``valence`` and ``arousal`` in [-1, 1];
- ``subject`` (or ``group``): keeps each person on one side of the split; ``split``: train / val / test as given.

An empty modality cell means that modality was not recorded for the sample: the fusion then works from the others.
Relative paths are resolved against the CSV's folder. A row with a missing file or a bad value is quarantined with
its line number and the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from affectkit.data.records import (
    Reject,
    Rejection,
    check_split_given_everywhere,
    listed_path,
    moved_prefix,
    optional_float,
    parse_expression,
    parse_split,
    parse_valence_arousal,
)
from affectkit.errors import AffectkitError
from affectkit.progress import reporter

MODALITIES = ("face", "audio", "physio")
TARGET_COLUMNS = ("expression", "valence", "arousal")
GROUP_COLUMNS = ("subject", "group")


@dataclass(frozen=True)
class Sample:
    id: str  # "line N" of the manifest: what every message and output names it by
    files: dict[str, Path]  # modality -> file, for the modalities recorded for this sample
    start: float | None = None
    end: float | None = None
    expression: int | None = None
    valence: float = math.nan
    arousal: float = math.nan
    group: str | None = None
    split: str | None = None


@dataclass
class MultimodalManifest:
    path: Path
    modalities: list[str]  # the modality columns the manifest has
    samples: list[Sample]
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def has_expression(self) -> bool:
        return any(s.expression is not None for s in self.samples)

    @property
    def has_valence_arousal(self) -> bool:
        return any(math.isfinite(s.valence) for s in self.samples)

    def coverage(self) -> dict[str, int]:
        """How many samples recorded each modality."""
        return {m: sum(m in s.files for s in self.samples) for m in self.modalities}


def _window(row: dict[str, str], source: str) -> tuple[float | None, float | None]:
    start, end = (optional_float(row.get(name, ""), name, source) for name in ("start", "end"))
    start = None if math.isnan(start) else start
    end = None if math.isnan(end) else end
    if start is not None and start < 0:
        raise Reject("window_invalid", f"{source}: start {start:g} s is negative")
    if start is not None and end is not None and end <= start:
        raise Reject("window_invalid", f"{source}: end {end:g} s is not after start {start:g} s")
    return start, end


def _sample(row: dict[str, str], line: int, modalities: list[str], base: Path, group_column: str | None,
            csv_name: str, require_labels: bool, moved: str | None) -> Sample:
    source = f"{csv_name} line {line}"
    files = {}
    for modality in modalities:
        raw = row[modality].strip()
        if not raw:
            continue
        path = listed_path(raw, base, moved)
        if not (path.is_file() or (modality == "face" and path.is_dir())):  # a face clip may be a frame folder
            raise Reject(f"{modality}_missing", f"{source}: {modality} file {raw} is missing")
        files[modality] = path
    if not files:
        raise Reject("no_modality", f"{source}: no {', '.join(modalities)} file is given")
    start, end = _window(row, source)
    raw_expression = row.get("expression", "").strip()
    expression = parse_expression(raw_expression, source) if raw_expression else None
    valence, arousal = parse_valence_arousal(row.get("valence", ""), row.get("arousal", ""), source)
    if require_labels and expression is None and math.isnan(valence):
        raise Reject("annotation_missing", f"{source}: neither an expression nor valence and arousal is given")
    group = (row[group_column].strip() or None) if group_column else None
    return Sample(f"line {line}", files, start, end, expression, valence, arousal, group,
                  parse_split(row.get("split", ""), source))


def read_manifest(path: str | Path, require_labels: bool = True) -> MultimodalManifest:
    """Every row of the manifest checked: files present, windows and labels valid; bad rows are quarantined.
    Without ``require_labels`` (samples to predict) the label columns may be absent or empty."""
    path = Path(path)
    if not path.is_file():
        raise AffectkitError(f"{path} does not exist: give a multimodal manifest CSV (columns face, audio, physio, "
                             "start, end, expression, valence, arousal, subject, split).")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise AffectkitError(f"{path} is not a readable CSV ({exc}).") from None
    table.columns = [c.strip().lower() for c in table.columns]
    modalities = [m for m in MODALITIES if m in table.columns]
    if not modalities:
        raise AffectkitError(f"{path} has none of the modality columns {', '.join(MODALITIES)}; its columns are "
                             f"{', '.join(table.columns)}.")
    if require_labels and not set(TARGET_COLUMNS) & set(table.columns):
        raise AffectkitError(f"{path} has no label column: give expression, or valence and arousal, or all three.")
    group_column = next((c for c in GROUP_COLUMNS if c in table.columns), None)
    rows = table.to_dict("records")
    moved = moved_prefix((row[m] for row in rows for m in modalities if row[m].strip()), path.parent)
    if moved is not None:
        reporter().note(f"{path.name}: paths under {moved} (not on this machine) read from under {path.parent}")
    samples, rejected = [], []
    for i, row in enumerate(rows):
        line = i + 2  # the header is line 1
        try:
            samples.append(_sample(row, line, modalities, path.parent, group_column, path.name, require_labels,
                                   moved))
        except Reject as r:
            rejected.append(Rejection(f"line {line}", str(path), r.kind, r.reason))
    if not samples:
        reasons = "; ".join(r.reason for r in rejected[:3])
        raise AffectkitError(f"{path}: no valid row ({len(rejected)} rejected; first: {reasons}).")
    check_split_given_everywhere(path, (s.split for s in samples))
    return MultimodalManifest(path, modalities, samples, rejected)
