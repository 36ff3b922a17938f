"""Images whose file names say their expression (JAFFE, KDEF, RaFD and many a lab's own set), read where a
``label_pattern`` is given: a regex searched in each image's name, whose group ``expression`` (else its first group)
is the class, and whose group ``subject``, where it has one, says who is who. A folder given without one whose images
are named as JAFFE, KDEF or RaFD name theirs is read by that set's pattern (``KNOWN_NAMINGS``), every view and gaze
of it; a label_pattern of your own reads a part (KDEF's frontal faces: ``...(?P<expression>[A-Z]{2})S\\.``)::

    JAFFE  KA.AN1.39.tiff
    KDEF   AF01ANS.JPG
    RaFD   Rafd090_01_Caucasian_female_angry_frontal.jpg

The expression is a class name or synonym (``angry``, ``Happiness``, ``contemptuous``), one of the two-letter codes
such sets use (AN, DI, FE or AF, HA, NE, SA, SU, CO) or a key of ``class_map`` (``--set class_map.sc=fear``, or
``=ignore``). Images in every folder below DATA are read; a name the pattern does not match is quarantined, and an
expression it cannot name stops the read with the values found, as an unknown class folder does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from affectkit.data.layouts.class_folders import folder_label, parse_class_map
from affectkit.data.records import (
    IGNORE,
    IMAGE_SUFFIXES,
    DatasetIndex,
    ReadOptions,
    Record,
    Reject,
    Rejection,
    accepted_class_names,
    collect,
    image_files,
    inspect_image,
    is_image_name,
    not_in_layout,
)
from affectkit.errors import AffectkitError

NAME = "file_names"
NEEDS = ("images whose names say their expression, read with a label_pattern (--set 'label_pattern=REGEX'), or named "
         "as JAFFE, KDEF or RaFD name theirs")
CLASS_CODES = {"ne": 0, "ha": 1, "sa": 2, "su": 3, "fe": 4, "af": 4, "di": 5, "an": 6, "co": 7}
# The releases' own names, each image's whole name: a set's expression, its subject (KDEF's two sessions of one
# person are one subject) and, for KDEF and RaFD, its view or gaze.
KNOWN_NAMINGS = {
    "JAFFE": r"^(?P<subject>[A-Z]{2})\.(?P<expression>NE|HA|SA|SU|FE|DI|AN)\d+\.\d+\.[^.]+$",
    "KDEF": r"^[AB](?P<subject>[FM]\d{2})(?P<expression>NE|HA|SA|SU|AF|DI|AN)(?:S|HL|HR|FL|FR)\.[^.]+$",
    "RaFD": r"^Rafd\d+_(?P<subject>\d+)_[A-Za-z]+_[A-Za-z]+_(?P<expression>[a-z]+)_(?:frontal|left|right)\.[^.]+$",
}
# A folder is read by a known naming where this share of its images bears it (the rest are quarantined as names
# the pattern does not match), so that one stray file does not hide a whole set; the walk stops this deep.
KNOWN_NAMING_SHARE = 0.9
KNOWN_NAMING_DEPTH = 3


def compile_label_pattern(pattern: str) -> re.Pattern:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise AffectkitError(f"label_pattern {pattern!r} is not a valid regular expression ({exc}).") from None
    if "expression" not in regex.groupindex and regex.groups == 0:
        raise AffectkitError(f"label_pattern {pattern!r} has no group to read the expression from: name it "
                             "(?P<expression>...) or put it in the first group.")
    return regex


def _naming_of(names: list[str]) -> str | None:
    """The set of ``KNOWN_NAMINGS`` that at least ``KNOWN_NAMING_SHARE`` of these image names bear, if any."""
    counts = {naming: sum(re.match(pattern, name) is not None for name in names)
              for naming, pattern in KNOWN_NAMINGS.items()}
    best = max(counts, key=counts.get)
    return best if names and counts[best] >= KNOWN_NAMING_SHARE * len(names) else None


def known_naming(path: Path) -> str | None:
    """The known set whose naming the images in ``path``, up to ``KNOWN_NAMING_DEPTH`` folders down, bear."""
    names = []
    for folder, dirs, files in os.walk(path):
        depth = len(Path(folder).relative_to(path).parts)
        dirs[:] = [] if depth >= KNOWN_NAMING_DEPTH else [d for d in dirs if not d.startswith(".")]
        names += [f for f in files if is_image_name(f)]
    return _naming_of(names)


def find(path: Path, options: ReadOptions) -> Path | None:
    """``path`` where a label_pattern is given, or where its images are named as a known set names them."""
    if not path.is_dir():
        return None
    return path if options.label_pattern or known_naming(path) else None


def _value(match: re.Match, name: str) -> str | None:
    if name in match.re.groupindex:
        return match.group(name)
    return match.group(1) if name == "expression" else None


def _label(value: str, mapping: dict[str, int | str]) -> int | str | None:
    label = folder_label(value, mapping)
    return CLASS_CODES.get(value.strip().lower()) if label is None else label


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    files = image_files(root)
    if not files:
        raise AffectkitError(f"{root} holds no image ({', '.join(IMAGE_SUFFIXES)}) for label_pattern to read.")
    naming = None if options.label_pattern else _naming_of([f.name for f in files])
    pattern = options.label_pattern or KNOWN_NAMINGS.get(naming)
    if pattern is None:
        raise not_in_layout(root, NAME, NEEDS)
    regex = compile_label_pattern(pattern)
    mapping = parse_class_map(options.class_map)
    matches = {f: regex.search(f.name) for f in files}
    values = {_value(m, "expression") for m in matches.values() if m is not None} - {None}
    labels = {v: _label(v, mapping) for v in values}
    unknown = sorted(v for v, label in labels.items() if label is None)
    if unknown:
        raise AffectkitError(f"{root}: label_pattern reads the expression(s) {', '.join(unknown)} from file names, "
                             f"which are not expression names (accepted, in any case: {accepted_class_names()}; or "
                             f"the codes {', '.join(c.upper() for c in CLASS_CODES)}); map each with class_map, e.g. "
                             f"--set class_map.{unknown[0]}=fear (or ={IGNORE} to leave it out).")

    def build(file: Path) -> Record | Rejection | list[Record]:
        rel = file.relative_to(root).as_posix()
        match = matches[file]
        if match is None or _value(match, "expression") is None:
            return Rejection(rel, str(file), "label_unmatched", f"{file.name} does not match label_pattern "
                                                                f"{pattern!r}")
        label = labels[_value(match, "expression")]
        if label == IGNORE:
            return []
        try:
            info = inspect_image(file)
        except Reject as r:
            return Rejection(rel, str(file), r.kind, r.reason)
        return Record(rel, file, label, width=info.width, height=info.height, digest=info.digest,
                      group=_value(match, "subject"))

    grouped = "subject" in regex.groupindex
    detail = f"{naming}'s file names (label_pattern {pattern})" if naming else f"label_pattern {pattern}"
    return collect(root, NAME, files, build, detail=detail,
                   group_source="label_pattern's subject group" if grouped else None)
