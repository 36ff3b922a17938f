"""Faces boxed in COCO's JSON, as Roboflow ("COCO JSON"), CVAT and Label Studio export a detection set of
expressions::

    DATA/train/_annotations.coco.json   images, annotations (bbox [x, y, w, h] in pixels, category_id), categories
    DATA/train/0001.jpg                 (valid/, test/ alike)

or ``DATA/annotations/instances_train.json`` with the images beside it, in ``DATA/`` or in ``DATA/images/``, or one
such JSON given directly. Each annotation is a face: its class is its category's name (a class name or synonym, or
mapped with ``class_map``), its crop the box plus AffectNet's margin, as YOLO's boxes are cropped. Categories no face
is given (Roboflow's project-wide supercategory) are not read. An image no annotation names has no face to learn
from and is quarantined as ``label_missing``. A JSON's split is the one its name or folder names (train, valid,
test; ``instances_val2017.json``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import defaultdict
from pathlib import Path

from affectkit.data.layouts.affectnet_official import face_crop
from affectkit.data.layouts.class_folders import named_labels
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
    inspect_image,
    split_named,
)
from affectkit.errors import AffectkitError

NAME = "coco"
NEEDS = ("_annotations.coco.json in the folder or in each split folder, or annotations/*.json: COCO's images, "
         "annotations (face boxes) and categories")
COCO_KEYS = {"images", "annotations", "categories"}
ROBOFLOW_SUFFIX = ".coco.json"  # _annotations.coco.json


@functools.lru_cache(maxsize=16)
def _load(path: str, stamp: int) -> dict | None:
    """The JSON at ``path`` where it is COCO's (``stamp``: its modification time, so an edited file is read again)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        if Path(path).name.endswith(ROBOFLOW_SUFFIX):  # named as COCO's: damaged, not some other JSON
            raise AffectkitError(f"{path} is not readable JSON ({exc}); it is damaged or cut short: export or "
                                 "download it again.") from None
        return None
    return data if isinstance(data, dict) and COCO_KEYS <= set(data) else None


def _coco(path: Path) -> dict | None:
    return _load(str(path), path.stat().st_mtime_ns)


def coco_files(path: Path) -> list[Path]:
    """The COCO JSONs of a folder: in it, in its ``annotations/`` folder, or in its split folders."""
    folders = [path, path / "annotations",
               *sorted(d for d in path.iterdir() if d.is_dir() and d.name.lower() in SPLIT_ALIASES)]
    return [f for folder in folders if folder.is_dir() for f in sorted(folder.glob("*.json")) if _coco(f) is not None]


def find(path: Path, options: ReadOptions) -> Path | None:
    """A COCO JSON given directly, or DATA where it holds some."""
    if path.is_file():
        return path if path.suffix.lower() == ".json" and _coco(path) is not None else None
    return path if path.is_dir() and coco_files(path) else None


def _labels(file: Path, data: dict, options: ReadOptions) -> dict[int, int | str]:
    """Category id -> affectkit class (or ``IGNORE``), for the categories some face is given."""
    used = {a.get("category_id") for a in data["annotations"] if isinstance(a, dict)}
    names = {c.get("id"): str(c.get("name", "")) for c in data["categories"] if isinstance(c, dict)}
    return named_labels({number: names[number] for number in used if number in names}, options, str(file),
                        "the categories")


def _image_path(file: Path, root: Path, name: str) -> Path:
    """Where an image the JSON names is: beside the JSON, under the data folder, or in an images/ folder of
    either (the first that holds it; else beside the JSON, to be reported missing)."""
    candidates = [file.parent / name, root / name, root / "images" / name, file.parent.parent / "images" / name]
    return next((c for c in candidates if c.is_file()), candidates[0])


def _box(annotation: dict, source: str) -> tuple[int, int, int, int]:
    box = annotation.get("bbox")
    if not isinstance(box, list) or len(box) != 4:
        raise Reject("box_invalid", f"{source}: bbox is not [x, y, width, height]")
    try:
        x, y, w, h = (round(float(v)) for v in box)
    except (TypeError, ValueError):
        raise Reject("box_invalid", f"{source}: bbox holds a value that is not a number") from None
    if w <= 0 or h <= 0:
        raise Reject("box_invalid", f"{source}: the face box has no area")
    return x, y, w, h


def read(found: Path, options: ReadOptions) -> DatasetIndex:
    root = found.parent if found.is_file() else found
    files = [found] if found.is_file() else coco_files(found)
    keys = []
    for file in files:
        data = _coco(file)
        labels = _labels(file, data, options)
        faces = defaultdict(list)
        for annotation in data["annotations"]:
            if isinstance(annotation, dict):
                faces[annotation.get("image_id")].append(annotation)
        split = split_named(file, root)
        keys += [(file, image, faces.get(image.get("id"), []), labels, split)
                 for image in data["images"] if isinstance(image, dict)]

    def build(key) -> list[Record | Rejection] | Rejection:
        file, image_entry, annotations, labels, split = key
        name = str(image_entry.get("file_name", ""))
        image = _image_path(file, root, name)
        rel = image.relative_to(root).as_posix() if image.is_relative_to(root) else str(image)
        if not annotations:
            return Rejection(rel, str(image), "label_missing", f"{file.name}: no face is boxed in {name}")
        try:
            info = inspect_image(image)
        except Reject as r:
            return Rejection(rel, str(image), r.kind, r.reason)
        results: list[Record | Rejection] = []
        for annotation in annotations:
            face_id = f"{rel}#{annotation.get('id')}"
            source = f"{file.name} annotation {annotation.get('id')}"
            try:
                label = labels.get(annotation.get("category_id"))
                if label is None:
                    raise Reject("expression_out_of_range", f"{source}: category {annotation.get('category_id')} is "
                                                            "none of the JSON's categories")
                if label == IGNORE:
                    continue
                crop = face_crop(_box(annotation, source), info.width, info.height, source)
            except Reject as r:  # this face alone: the image's other faces stand
                results.append(Rejection(face_id, str(file), r.kind, r.reason))
                continue
            digest = hashlib.blake2b(f"{info.digest}|{crop}".encode(), digest_size=10).hexdigest()
            results.append(Record(face_id, image, label, width=crop[2] - crop[0], height=crop[3] - crop[1],
                                  digest=digest, split=split, crop=crop))
        return results

    detail = f"faces boxed in {', '.join(f.relative_to(root).as_posix() for f in files)}"
    index = collect(root, NAME, keys, build, detail=detail)
    check_split_given_everywhere(root, (r.split for r in index.records))
    return index
