"""Images whose file names say their expression (JAFFE, KDEF, RaFD and many a lab's own set), read where a
``label_pattern`` is given: a regex searched in each image's name, whose group ``expression`` (else its first group)
is the class, and whose group ``subject``, where it has one, says who is who::

    JAFFE  KA.AN1.39.tiff                           ^(?P<subject>[A-Z]{2})\\.(?P<expression>[A-Z]{2})\\d
    KDEF   AF01ANS.JPG                              ^[AB](?P<subject>[FM]\\d\\d)(?P<expression>[A-Z]{2})S
    RaFD   Rafd090_01_Caucasian_female_angry_frontal.jpg   ^Rafd\\d+_(?P<subject>\\d+)_.+?_(?P<expression>[a-z]+)_frontal

The expression is a class name or synonym (``angry``, ``Happiness``), one of the two-letter codes such sets use (AN,
DI, FE or AF, HA, NE, SA, SU, CO) or a key of ``class_map`` (``--set class_map.sc=fear``, or ``=ignore``). Images in
every folder below DATA are read; a name the pattern does not match is quarantined, and an expression it cannot
name stops the read with the values found, as an unknown class folder does.
"""

from __future__ import annotations

import re
from pathlib import Path

from affectkit.data.layouts.class_folders import folder_label, parse_class_map
from affectkit.data.records import (
    IGNORE,
    IMAGE_SUFFIXES,
    UNREAD_PHOTO_SUFFIXES,
    DatasetIndex,
    ReadOptions,
    Record,
    Reject,
    Rejection,
    accepted_class_names,
    collect,
    inspect_image,
    natural_name_key,
)
from affectkit.errors import AffectkitError

NAME = "file_names"
NEEDS = "images whose names say their expression, read with a label_pattern (--set 'label_pattern=REGEX')"
CLASS_CODES = {"ne": 0, "ha": 1, "sa": 2, "su": 3, "fe": 4, "af": 4, "di": 5, "an": 6, "co": 7}


def compile_label_pattern(pattern: str) -> re.Pattern:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise AffectkitError(f"label_pattern {pattern!r} is not a valid regular expression ({exc}).") from None
    if "expression" not in regex.groupindex and regex.groups == 0:
        raise AffectkitError(f"label_pattern {pattern!r} has no group to read the expression from: name it "
                             "(?P<expression>...) or put it in the first group.")
    return regex


def find(path: Path, options: ReadOptions) -> Path | None:
    return path if options.label_pattern and path.is_dir() else None


def _images(root: Path) -> list[Path]:
    files = (f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES + UNREAD_PHOTO_SUFFIXES and f.is_file()
             and not any(part.startswith(".") for part in f.relative_to(root).parts))
    return sorted(files, key=lambda f: [natural_name_key(part) for part in f.relative_to(root).parts])


def _value(match: re.Match, name: str) -> str | None:
    if name in match.re.groupindex:
        return match.group(name)
    return match.group(1) if name == "expression" else None


def _label(value: str, mapping: dict[str, int | str]) -> int | str | None:
    label = folder_label(value, mapping)
    return CLASS_CODES.get(value.strip().lower()) if label is None else label


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    regex = compile_label_pattern(options.label_pattern or "")
    mapping = parse_class_map(options.class_map)
    files = _images(root)
    if not files:
        raise AffectkitError(f"{root} holds no image ({', '.join(IMAGE_SUFFIXES)}) for label_pattern to read.")
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
                                                                f"{options.label_pattern!r}")
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
    return collect(root, NAME, files, build, detail=f"label_pattern {options.label_pattern}",
                   group_source="label_pattern's subject group" if grouped else None)
