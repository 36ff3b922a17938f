"""The data layouts affectkit reads, one module each, tried in this fixed order (the first that matches wins):

1. ``file_names``         any folder of images, where a label_pattern is given to read their names (else last)
2. ``affectnet``          DATA/annotations/<id>_exp.npy ... + DATA/images/<id>.jpg
3. ``affectnet_official`` training.csv / validation.csv with subDirectory_filePath and face boxes
4. ``fer2013``            a CSV with emotion, pixels[, Usage] (+ FER+'s fer2013new.csv beside it)
5. ``ferplus``            FER2013Train/ FER2013Valid/ FER2013Test/, each with FER+'s label.csv of votes
6. ``rafdb``              EmoLabel/list_patition_label.txt + Image/aligned/ or Image/original/
7. ``expw``               label/label.lst + image/origin/
8. ``affwild2``           cropped_aligned/<video>/00001.jpg + .../EXPR_Classification_Challenge/ [+ VA_Estimation_...]
9. ``ckplus``             cohn-kanade-images/S005/001/*.png + Emotion/S005/001/*_emotion.txt [+ Landmarks/]
10. ``oulu_casia``        [VL/Strong/]P001/Anger/000.jpeg ... (Oulu-CASIA's sequences of numbered frames)
11. ``afew_va``           DATA/001/00000.png ... + DATA/001/001.json (valence, arousal, landmarks per frame)
12. ``yolo``              DATA/data.yaml (class names) + [split/]images/*.jpg and [split/]labels/*.txt (face boxes)
13. ``coco``              [split/]_annotations.coco.json or annotations/*.json (COCO: images, face boxes, categories)
14. ``voc``               Annotations/*.xml + JPEGImages/, or an .xml beside each image (Pascal VOC, labelImg)
15. ``manifest``          DATA/manifest.csv, or any other CSV file given directly
16. ``class_folders``     DATA/<class>/... or DATA/<split>/<class>/...

A label_pattern is asked for, so it comes first; then the specific layouts; class folders next, since any folder
of folders might look like them; without a label_pattern, file names last, for a folder named as JAFFE, KDEF or RaFD
name theirs, since that takes a walk through the folder. Each module
has ``NAME``, ``NEEDS`` (what a folder must hold, for error messages), ``find(path, options)`` (what to read, or
None) and ``read(found, options) -> DatasetIndex``; one whose data set carries attributes of its faces (RAF-DB's
gender, race and age) has ``attributes(root) -> DataFrame | None`` too.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pandas as pd

from affectkit.data.layouts import (
    afew_va,
    affectnet_npy,
    affectnet_official,
    affwild2,
    ckplus,
    class_folders,
    coco,
    expw,
    fer2013,
    ferplus,
    file_names,
    manifest,
    oulu_casia,
    rafdb,
    voc,
    yolo,
)
from affectkit.data.records import LAYOUT_TITLES, ReadOptions, not_in_layout
from affectkit.errors import AffectkitError

DETECTED: tuple[ModuleType, ...] = (affectnet_npy, affectnet_official, fer2013, ferplus, rafdb, expw, affwild2,
                                    ckplus, oulu_casia, afew_va, yolo, coco, voc, manifest, class_folders)
LAYOUTS: tuple[ModuleType, ...] = (file_names, *DETECTED)
LAYOUT_NAMES = tuple(m.NAME for m in LAYOUTS)


def no_layout_error(path: Path) -> AffectkitError:
    needs = "; ".join(f"{m.NEEDS} ({LAYOUT_TITLES[m.NAME]}, --layout {m.NAME})" for m in (*DETECTED, file_names))
    return AffectkitError(f"{path} is not an affectkit data set: expected a folder with {needs}; or Hugging Face "
                          "tables of images (.parquet, .arrow), or a .zip or .tar of any of these.")


def own_attributes(layout: str, root: Path) -> pd.DataFrame | None:
    """The attributes of its faces (gender, race, age ...) a data set of ``layout`` read at ``root`` carries itself,
    one row per face named by its ``id``; None where its layout holds none (RAF-DB's manual annotation does)."""
    read = getattr({m.NAME: m for m in LAYOUTS}.get(layout), "attributes", None)
    return None if read is None else read(root)


def choose(path: Path, options: ReadOptions, layout: str | None = None) -> tuple[ModuleType, Path]:
    """The layout module for ``path`` and what it reads there: the forced ``layout`` or the first that matches."""
    if layout is not None:
        by_name = {m.NAME: m for m in LAYOUTS}
        if layout not in by_name:
            raise AffectkitError(f"Unknown layout {layout!r}; the layouts are {', '.join(LAYOUT_NAMES)}.")
        module = by_name[layout]
        found = _find(module, path, options)
        if found is None:
            raise not_in_layout(path, module.NAME, module.NEEDS)
        return module, found
    for module in LAYOUTS if options.label_pattern else (*DETECTED, file_names):
        found = _find(module, path, options)
        if found is not None:
            return module, found
    raise no_layout_error(path)


def _find(module: ModuleType, path: Path, options: ReadOptions) -> Path | None:
    """``module.find``, where a folder it must list but cannot (no read permission) is one clear error."""
    try:
        return module.find(path, options)
    except OSError as exc:
        raise AffectkitError(f"{exc.filename or path} cannot be read ({exc.strerror or exc}): affectkit lists the data "
                             "set's folders to tell its layout.") from None
