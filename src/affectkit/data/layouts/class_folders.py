"""Class folders, torchvision's ImageFolder convention::

    DATA/<class>/**/*.jpg|png|...            (no split: affectkit splits it)
    DATA/<split>/<class>/**/*.jpg|png|...    (split folders train/, val|valid|validation/, test/, used as given)
    DATA/[<split>/]<subject>/<class>/...     (a folder per person, as lab sets come: each person is a subject)

Folder names are matched case-insensitively against the class names and their usual synonyms (``CLASS_SYNONYMS``);
``class_map`` names the rest (``{scream: fear}``) or leaves them out (``{scream: ignore}``). Files without an image
suffix are not samples (as in ImageFolder); files with one are checked and quarantined when they do not decode.
Two or more folders none of which is a class, holding class folders, are people's: each face's subject is its
person's folder, so the split keeps each person on one side. One such folder alone only wraps the data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from affectkit.config import CLASS_NAMES
from affectkit.data.layouts.rafdb import RAFDB_TO_AFFECTKIT
from affectkit.data.records import (
    IGNORE,
    SPLIT_ALIASES,
    DatasetIndex,
    ReadOptions,
    Record,
    Reject,
    Rejection,
    accepted_class_names,
    class_from_name,
    collect,
    inspect_image,
    is_image_name,
    natural_key,
    split_folder_rank,
)
from affectkit.errors import AffectkitError

NAME = "class_folders"
NEEDS = "one folder per class (neutral/, happy/, ...) holding images, optionally inside train/, val/, test/ folders"


def _image_files(folder: Path) -> Iterator[Path]:
    # os.walk skips unreadable folders instead of raising, which matters when the path is something like /etc.
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files, key=natural_key):
            if is_image_name(name):
                yield Path(parent) / name


def _holds_images(folder: Path) -> bool:
    return next(_image_files(folder), None) is not None


def _subfolders(path: Path) -> list[Path]:
    try:
        return sorted((d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")),
                      key=lambda d: d.name.lower())
    except OSError:
        return []


def parse_class_map(class_map: dict[str, str]) -> dict[str, int | str]:
    """Folder name (lower case) -> class id or IGNORE, checked once so a typo stops before anything is read."""
    out: dict[str, int | str] = {}
    for folder, target in class_map.items():
        target = str(target).strip().lower()
        label = IGNORE if target == IGNORE else class_from_name(target)
        if label is None:
            raise AffectkitError(
                f"class_map maps {folder!r} to {target!r}, which is neither a class name ({accepted_class_names()}) "
                "nor 'ignore'."
            )
        out[str(folder).strip().lower()] = label
    return out


# Numbered class folders, as copies of the public sets come: the number means what its set says it means.
NUMBERED_HINT = ("; class numbers mean what their set says: AffectNet's 0-7 are affectkit's own order (0 Neutral, "
                 "1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt), FER2013's 0-6 are Angry, "
                 "Disgust, Fear, Happy, Sad, Surprise, Neutral, RAF-DB's 1-7 are Surprise, Fear, Disgust, Happiness, "
                 "Sadness, Anger, Neutral.")


# RAF-DB's own file names (train_00001_aligned.jpg, test_0001.jpg): class folders 1-7 of such files (the copy of
# RAF-DB most often shared) are numbered as RAF-DB numbers its classes, whatever other sets' numbers mean.
RAFDB_FILE_NAME = re.compile(r"(train|test)_\d{4,5}(_aligned)?\.(jpe?g|png)", re.IGNORECASE)
KNOWN_NUMBERING_SHARE = 0.9


def _rafdb_numbering(by_split: dict[str | None, list[ClassDir]], numbered: list[str]) -> dict[str, int] | None:
    """RAF-DB's classes for the folders ``numbered`` (1-7), where nearly all their images bear RAF-DB's names."""
    if not set(numbered) <= {str(n) for n in RAFDB_TO_AFFECTKIT}:
        return None
    names = [f.name for dirs in by_split.values() for d, _ in dirs if d.name in numbered for f in _image_files(d)]
    matching = sum(bool(RAFDB_FILE_NAME.fullmatch(name)) for name in names)
    if not names or matching < KNOWN_NUMBERING_SHARE * len(names):
        return None
    return {name: RAFDB_TO_AFFECTKIT[int(name)] for name in numbered}


def folder_label(folder: str, mapping: dict[str, int | str]) -> int | str | None:
    key = folder.strip().lower()
    return mapping[key] if key in mapping else class_from_name(key)


def named_labels(names: dict, options: ReadOptions, where: str, what: str) -> dict:
    """Each key's class (or ``IGNORE``) from the class name ``names`` gives it (a face-box set's class numbers, its
    object names), read as a class folder's name is; names no class answers to stop the read, naming them (``what``:
    "the categories") and ``where`` they are."""
    mapping = parse_class_map(options.class_map)
    labels = {key: folder_label(name, mapping) for key, name in names.items()}
    unknown = sorted({names[key] for key, label in labels.items() if label is None})
    if unknown:
        raise AffectkitError(
            f"{where}: {what} {', '.join(unknown)} are not expression names (accepted, in any case: "
            f"{accepted_class_names()}); map each with class_map, e.g. --set class_map.{unknown[0].lower()}=fear, or "
            f"to {IGNORE} to leave it out.")
    return labels


def _is_class(folder: Path, mapping: dict[str, int | str]) -> bool:
    return isinstance(folder_label(folder.name, mapping), int)


def _holding_classes(folders: list[Path], mapping: dict[str, int | str]) -> list[Path]:
    """Where none of ``folders`` is a class: those holding class folders of images."""
    if any(_is_class(d, mapping) for d in folders):
        return []
    return [d for d in folders if any(_is_class(c, mapping) and _holds_images(c) for c in _subfolders(d))]


# A class folder and the person whose folder holds it (None where no person's folder does).
ClassDir = tuple[Path, str | None]


def _class_dirs(folders: list[Path], holders: list[Path], people: bool) -> list[ClassDir]:
    """The class folders among ``folders`` or inside those of them that hold class folders (``holders``), each with
    its person where ``people`` (else the folder holding class folders only wraps them)."""
    if not holders:
        return [(d, None) for d in folders if _holds_images(d)]
    if people:
        return [(c, d.name) for d in folders for c in _subfolders(d) if _holds_images(c)]
    return [(c, None) for d in holders for c in _subfolders(d) if _holds_images(c)]


def _structure(path: Path, mapping: dict[str, int | str]) -> tuple[dict[str | None, list[ClassDir]], list[Path]]:
    """Class folders by split (``None`` without split folders), and image folders sitting beside split folders."""
    top = _subfolders(path)
    split_dirs = [d for d in top if d.name.lower() in SPLIT_ALIASES]
    levels = [_subfolders(d) for d in split_dirs] if split_dirs else [top]
    holders = [_holding_classes(folders, mapping) for folders in levels]
    # Two or more folders holding class folders are people's; one alone only wraps the data (CK+48/anger/..., as a
    # download unpacks), and grouping every face as one person's would leave nothing to split.
    people = len({d.name for held in holders for d in held}) > 1
    if not split_dirs:
        return {None: _class_dirs(top, holders[0], people)}, []
    by_split: dict[str | None, list[ClassDir]] = {}
    for d, folders, held in zip(split_dirs, levels, holders):
        by_split.setdefault(SPLIT_ALIASES[d.name.lower()], []).extend(_class_dirs(folders, held, people))
    return by_split, [d for d in top if d not in split_dirs and _holds_images(d)]


def _stray_images(path: Path, by_split: dict[str | None, list[ClassDir]]) -> list[Path]:
    """Images lying directly in the folders that hold the class folders (the data's, a split's, a person's): no
    class says what they show, and they are quarantined rather than passed over in silence."""
    holders = {path, *(d.parent for dirs in by_split.values() for d, _ in dirs)}
    holders |= {d for d in _subfolders(path) if d.name.lower() in SPLIT_ALIASES}
    return [f for holder in sorted(holders) for f in sorted(holder.iterdir(), key=lambda f: natural_key(f.name))
            if f.is_file() and is_image_name(f.name)]


def find(path: Path, options: ReadOptions) -> Path | None:
    """The folder, when at least one of its (split folders', people's folders') subfolders is named after a class and
    holds images, or all of them are numbered."""
    if not path.is_dir():
        return None
    mapping = parse_class_map(options.class_map)
    top = _subfolders(path)
    split_dirs = [d for d in top if d.name.lower() in SPLIT_ALIASES]
    candidates = [c for d in split_dirs for c in _subfolders(d)] if split_dirs else top
    # Names first: walking every folder for images would crawl a whole home folder given by mistake.
    named = any(_is_class(d, mapping) and _holds_images(d) for d in candidates)
    # Numbered class folders are class folders too, whose numbers read() asks to have mapped.
    numbered = bool(candidates) and all(d.name.isdigit() for d in candidates) and any(map(_holds_images, candidates))
    return path if named or numbered or _holding_classes(candidates, mapping) else None


def read(path: Path, options: ReadOptions) -> DatasetIndex:
    mapping = parse_class_map(options.class_map)
    by_split, outside = _structure(path, mapping)
    if outside:
        raise AffectkitError(
            f"{path} holds split folders and also image folders outside them ({', '.join(d.name + '/' for d in outside)}); "
            "move those into train/, val/ or test/, or remove them."
        )
    found = sorted({d.name for dirs in by_split.values() for d, _ in dirs}, key=str.lower)
    unknown = [name for name in found if folder_label(name, mapping) is None]
    numbering = _rafdb_numbering(by_split, unknown) if unknown and all(n.isdigit() for n in unknown) else None
    if numbering:
        mapping = mapping | numbering
        unknown = []
    if unknown:
        raise AffectkitError(
            f"{path}: {'the class folder' if len(unknown) == 1 else 'the class folders'} {', '.join(unknown)} "
            f"{'is not an expression name' if len(unknown) == 1 else 'are not expression names'} (folders found: "
            f"{', '.join(found)}; accepted, in any case: {accepted_class_names()}); map each with class_map, e.g. "
            f"--set class_map.{unknown[0]}=fear or `class_map: {{{unknown[0]}: fear}}` in the config, or to ignore "
            "to leave it out" + (NUMBERED_HINT if all(name.isdigit() for name in unknown) else ".")
        )
    keys = [(split, label, person, f) for split, dirs in by_split.items() for d, person in dirs
            if (label := folder_label(d.name, mapping)) != IGNORE for f in _image_files(d)]
    keys += [(None, None, None, f) for f in _stray_images(path, by_split)]

    def build(key: tuple[str | None, int | None, str | None, Path]) -> Record | Rejection:
        split, label, person, file = key
        sample_id = file.relative_to(path).as_posix()
        if label is None:
            return Rejection(sample_id, str(file), "label_missing",
                             f"{sample_id} is not inside a class folder, so its expression is unknown")
        try:
            info = inspect_image(file)
        except Reject as r:
            return Rejection(sample_id, str(file), r.kind, r.reason)
        return Record(sample_id, file, label, width=info.width, height=info.height, digest=info.digest, split=split,
                      group=person)

    split_names = sorted({d.name for d in _subfolders(path)
                          if d.name.lower() in SPLIT_ALIASES and by_split.get(SPLIT_ALIASES[d.name.lower()])},
                         key=split_folder_rank)
    detail = " ".join(f"{n}/" for n in split_names) + " folders" if split_names else "no split folders"
    ignored = [name for name in found if folder_label(name, mapping) == IGNORE]
    if ignored:
        detail += f", ignored {', '.join(n + '/' for n in ignored)}"
    if numbering:
        meaning = ", ".join(f"{n} {CLASS_NAMES[label]}" for n, label in sorted(numbering.items()))
        detail += f", folders numbered as RAF-DB numbers its classes, as its file names are RAF-DB's: {meaning}"
    people = {person for _, _, person, _ in keys} - {None}
    if people:
        detail += f", {len(people)} people's folders"
    return collect(path, NAME, keys, build, detail=detail, group_source="people's folders" if people else None)
