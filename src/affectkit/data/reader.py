"""Read a data set in any of the layouts of :mod:`affectkit.data.layouts` into validated records, quarantining bad
ones with a reason.

The layout is detected (in the fixed order documented there) or forced with ``layout``. Label orders are converted
once, in the layout's reader, so every record's ``expression`` is an affectkit class id. ``group_pattern`` (a regex
searched in each image's file name; its first group, or the whole match, is the subject) gives records a ``group``
so that splits keep each subject on one side.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from affectkit.config import READING_KEYS
from affectkit.data.archives import is_archive, unpacked, wrapped_folder
from affectkit.data.layouts import LAYOUT_NAMES, choose
from affectkit.data.layouts.file_names import KNOWN_NAMINGS, compile_label_pattern
from affectkit.data.records import (
    AFFECTNET_NON_EXPRESSIONS,
    CLASS_SYNONYMS,
    IMAGE_SUFFIXES,
    LAYOUT_TITLES,
    SPLIT_ALIASES,
    VA_NOT_ANNOTATED,
    DatasetIndex,
    ReadOptions,
    Record,
    Rejection,
    inspect_image,
    parse_dimension,
    parse_expression,
)
from affectkit.data.tables import written_out
from affectkit.errors import AffectkitError
from affectkit.progress import silenced

__all__ = [
    "AFFECTNET_NON_EXPRESSIONS", "CLASS_SYNONYMS", "IMAGE_SUFFIXES", "LAYOUT_NAMES", "LAYOUT_TITLES", "SPLIT_ALIASES",
    "VA_NOT_ANNOTATED", "DatasetIndex", "Record", "Rejection", "inspect_image", "parse_dimension", "parse_expression",
    "SUBJECT_NAMINGS", "layout_found", "read_dataset", "reader_options",
]


def layout_found(path: str | Path, label_pattern: str | None = None, class_map: dict[str, str] | None = None,
                 cache_dir: str | None = None) -> bool:
    """Whether a layout reads ``path`` (file names where ``label_pattern`` is given or they are a known set's; class
    folders named as ``class_map`` maps them too); a plain folder of images is none."""
    try:
        _choose(Path(path).expanduser(), ReadOptions(class_map=dict(class_map or {}), label_pattern=label_pattern),
                None, cache_dir)
    except AffectkitError:
        return False
    return True


def reader_options(config) -> dict:
    """The :func:`read_dataset` keywords a run's Config sets: its ``READING_KEYS``, and where archives unpack."""
    return {key: getattr(config, key) for key in READING_KEYS} | {"cache_dir": config.cache_dir}


def _choose(path: Path, options: ReadOptions, layout: str | None, cache_dir: str | None):
    """The layout module for ``path``, what it reads there, and what that was written out from (or None).

    An archive is read as the folder it unpacks to under the cache (:func:`affectkit.data.cache.default_cache_dir`),
    or as the one folder that folder wraps; Hugging Face tables of images as the folder they are written out to
    there (:mod:`affectkit.data.tables`)."""
    from affectkit.data.cache import default_cache_dir  # imported here: the cache module imports this one

    cache = default_cache_dir(cache_dir)
    folder = unpacked(path, cache)
    while True:
        try:
            return (*choose(folder, options, layout), None)
        except AffectkitError as exc:
            tables = written_out(folder, cache)
            if tables is not None:
                return (*choose(tables.folder, options, layout), tables.detail)
            if folder == path:
                held = _archives_in(path)
                if not held:
                    raise
                raise AffectkitError(f"{path} is not a data set affectkit reads, but holds {', '.join(held)}: give "
                                     "the archive itself (it is unpacked and read as the data set it holds).") from None
            inner = wrapped_folder(folder)
            if inner is None:
                raise AffectkitError(f"The archive {path}, unpacked: {exc}") from None
            folder = inner


def _archives_in(folder: Path) -> list[str]:
    """The names of the archives directly inside ``folder`` (none where it is no folder, or cannot be listed)."""
    try:
        return sorted(p.name for p in folder.iterdir() if is_archive(p)) if folder.is_dir() else []
    except OSError:
        return []


def _compile_group_pattern(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise AffectkitError(f"group_pattern {pattern!r} is not a valid regular expression ({exc}).") from None


def _apply_groups(index: DatasetIndex, pattern: str) -> DatasetIndex:
    """Each record's subject from its file name; a file the pattern does not match is quarantined, since a split
    that silently treats it as its own subject could put that person on two sides."""
    regex = _compile_group_pattern(pattern)
    records, rejected = [], list(index.rejected)
    for r in index.records:
        match = regex.search(r.image_path.name)
        if match is None:
            rejected.append(Rejection(r.id, str(r.image_path), "group_unmatched",
                                      f"file name {r.image_path.name} does not match group_pattern {pattern!r}"))
        else:
            records.append(dataclasses.replace(r, group=match.group(1) if regex.groups else match.group(0)))
    return dataclasses.replace(index, records=records, rejected=rejected, group_source=f"group_pattern {pattern}")


# File names of public sets that say who is who. A set read without subjects whose every file is named so is grouped
# by them, so that no person falls on two sides of a split (the CK+ layout groups by its subject folders already;
# this is CK+, KDEF, JAFFE or RaFD as class folders or a manifest). A group_pattern given wins.
SUBJECT_NAMINGS = {"CK+": r"^(S\d{3})_\d{3}_\d{8}", **KNOWN_NAMINGS}


def _named_subjects(index: DatasetIndex) -> DatasetIndex:
    if any(r.group is not None for r in index.records):
        return index
    for name, pattern in SUBJECT_NAMINGS.items():
        regex = re.compile(pattern)
        if all(regex.search(r.image_path.name) for r in index.records):
            grouped = _apply_groups(index, pattern)
            return dataclasses.replace(grouped, group_source=f"{name}'s file names (group_pattern {pattern})")
    return index


def _drop_duplicates(index: DatasetIndex) -> DatasetIndex:
    """One record per id: splits.csv and the cache are keyed by it (a manifest may list an image twice)."""
    seen: set[str] = set()
    records, rejected = [], list(index.rejected)
    for r in index.records:
        if r.id in seen:
            rejected.append(Rejection(r.id, str(r.image_path), "duplicate", f"{r.id} is listed again; the first is kept"))
        else:
            seen.add(r.id)
            records.append(r)
    return dataclasses.replace(index, records=records, rejected=rejected) if len(records) < len(index.records) else index


def read_dataset(path: str | Path, progress: bool = True, layout: str | None = None,
                 class_map: dict[str, str] | None = None, group_pattern: str | None = None,
                 label_pattern: str | None = None, ckplus_neutral_onset: bool = False,
                 affwild2_frame_step: int = 1, affwild2_task: str = "auto",
                 affectnet_unclassed_faces: bool = False, cache_dir: str | None = None) -> DatasetIndex:
    """Validate every sample of the data set at ``path`` (a folder, a file, or an archive of either, read as
    :mod:`affectkit.data.archives` unpacks it under ``cache_dir``); bad samples go to ``rejected`` with a reason.

    ``layout``: one of ``LAYOUT_NAMES`` to skip detection. ``class_map``: class-folder name -> class name or
    ``"ignore"``. ``group_pattern``: see the module docstring. ``label_pattern``: a regex reading each image's
    expression (and subject) from its file name (:mod:`affectkit.data.layouts.file_names`). ``ckplus_neutral_onset``:
    CK+'s sequences also give their first frame as a Neutral face. ``affwild2_frame_step``: Aff-Wild2's every n-th
    annotated frame; ``affwild2_task``: Aff-Wild2's challenge whose frames and split are read;
    ``affectnet_unclassed_faces``: AffectNet's None and Uncertain faces with valence/arousal are read without a class.
    """
    with silenced(not progress):
        path = Path(path).expanduser()
        if not path.exists():
            raise AffectkitError(f"{path} does not exist.")
        if group_pattern:
            _compile_group_pattern(group_pattern)  # a typo stops before a long read
        if label_pattern:
            compile_label_pattern(label_pattern)
        options = ReadOptions(class_map=dict(class_map or {}), ckplus_neutral_onset=ckplus_neutral_onset,
                              label_pattern=label_pattern, affwild2_frame_step=affwild2_frame_step,
                              affwild2_task=affwild2_task, affectnet_unclassed_faces=affectnet_unclassed_faces)
        module, found, written_from = _choose(path, options, layout, cache_dir)
        if group_pattern and module.NAME == "fer2013":
            raise AffectkitError(f"{found}: group_pattern needs file names, and FER2013's rows have none.")
        try:
            index = module.read(found, options)
        except AffectkitError as exc:
            if written_from is None:
                raise
            raise AffectkitError(f"{path} ({written_from}, written out as {found}): {exc}") from None
        detail = index.detail if written_from is None else f"{written_from}, written out as {index.detail}"
        index = dataclasses.replace(index, source=path.resolve(), detail=detail)
        index = _apply_groups(index, group_pattern) if group_pattern else _named_subjects(index)
        index = _drop_duplicates(index)
        if not index.records:
            counts = ", ".join(f"{k}: {v}" for k, v in index.rejection_counts().items()) or "none found"
            raise AffectkitError(f"{path} has no valid samples (rejected by reason: {counts}).")
        return index
