"""Faces boxed in YOLO's format, as Roboflow and Ultralytics export a detection set of expressions::

    DATA/data.yaml                  names: [anger, contempt, ...] (a list, or {0: anger, ...})
    DATA/train/images/0001.jpg      (or DATA/images/train/0001.jpg; valid/ or val/, test/ alike)
    DATA/train/labels/0001.txt      "class cx cy w h" per face, the box relative to the image's size

Label Studio's export names the classes in ``classes.txt`` (one a line) beside images/ and labels/; CVAT's (YOLO 1.1,
Darknet's) in ``obj.names``, each image's labels beside it in ``obj_train_data/``. The class of a line is
``names[class]``: a class name or synonym, or mapped with ``class_map``. Each face is cropped by its box plus
AffectNet's margin, clipped to the image; a line of a polygon (segmentation export) is cropped by the polygon's
bounds. An image whose label file is missing or empty (a detection set's background image) has no face to learn
from and is quarantined as ``label_missing``. The split is the set's own where its folders name one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from affectkit.data.layouts.affectnet_official import face_crop
from affectkit.data.layouts.class_folders import named_labels
from affectkit.data.records import (
    IGNORE,
    DatasetIndex,
    ReadOptions,
    Record,
    Reject,
    Rejection,
    check_split_given_everywhere,
    collect,
    image_files,
    inspect_image,
    is_image_name,
    numbered_lines,
    split_in_name,
)
from affectkit.errors import AffectkitError

NAME = "yolo"
CONFIG_FILES = ("data.yaml", "data.yml", "classes.txt", "obj.names")  # Ultralytics', Label Studio's, CVAT's
NEEDS = ("data.yaml (or classes.txt, obj.names) with the class names and images/ folders beside labels/ folders of "
         "'class cx cy w h' lines (or the lines beside each image)")


def _config_file(path: Path) -> Path | None:
    return next((path / name for name in CONFIG_FILES if (path / name).is_file()), None)


def _holds_folder(path: Path, name: str) -> bool:
    """Whether ``path`` or one of its folders (a split's) holds a folder ``name``."""
    return (path / name).is_dir() or any((d / name).is_dir() for d in path.iterdir() if d.is_dir())


def _has_images_folder(path: Path) -> bool:
    return _holds_folder(path, "images")


def find(path: Path, options: ReadOptions) -> Path | None:
    """DATA, where it names the classes and holds a folder named images (at the top or in a split folder; beside
    labels/ where a plain list names the classes, which other sets keep too), or, where obj.names names them
    (CVAT's), folders of images with their label files beside them."""
    config_file = _config_file(path) if path.is_dir() else None
    if config_file is None:
        return None
    if _has_images_folder(path) and (config_file.suffix in (".yaml", ".yml") or _holds_folder(path, "labels")):
        return path
    if config_file.name != "obj.names":
        return None
    beside = any(f.with_suffix(".txt").is_file() for d in path.iterdir() if d.is_dir() for f in d.iterdir()
                 if is_image_name(f.name))
    return path if beside else None


def class_names(config_file: Path) -> dict[int, str]:
    """data.yaml's ``names`` (or classes.txt's, obj.names' lines): class number -> name."""
    if config_file.suffix.lower() in (".txt", ".names"):
        return {number: line for number, (_, line) in enumerate(numbered_lines(config_file))}
    try:
        config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AffectkitError(f"{config_file} is not readable YAML ({exc}).") from None
    names = config.get("names") if isinstance(config, dict) else None
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise AffectkitError(f"{config_file} has no 'names' (the class names, a list or a mapping from the class "
                             "numbers); YOLO's labels are numbers that only it names.")
    try:
        return {int(number): str(name) for number, name in names.items()}
    except ValueError:
        raise AffectkitError(f"{config_file}: the keys of 'names' are not class numbers.") from None


def _label_file(image: Path, root: Path) -> Path:
    """YOLO's rule: the label file is the image's path with its last images/ folder read as labels/; beside the
    image where no images/ folder holds it (CVAT's obj_train_data/)."""
    parts = list(image.relative_to(root).parts)
    if "images" not in parts[:-1]:
        return image.with_suffix(".txt")
    at = len(parts) - 1 - parts[::-1].index("images")
    parts[at] = "labels"
    return root.joinpath(*parts).with_suffix(".txt")


def _split(image: Path, root: Path) -> str | None:
    """The split a folder of the image names (train/, valid/, CVAT's obj_train_data/)."""
    return next((split for p in image.relative_to(root).parts[:-1] if (split := split_in_name(p))), None)


def _box(fields: list[str], source: str) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) relative to the image, from a box line or a polygon line."""
    try:
        values = [float(v) for v in fields[1:]]
    except ValueError:
        raise Reject("line_invalid", f"{source}: the box holds a value that is not a number") from None
    if len(values) == 4:
        cx, cy, w, h = values
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if len(values) >= 6 and len(values) % 2 == 0:
        xs, ys = values[0::2], values[1::2]
        return min(xs), min(ys), max(xs), max(ys)
    raise Reject("line_invalid", f"{source}: {len(fields)} fields; a YOLO line holds the class and a box (cx cy w h) "
                                 "or a polygon (x y pairs)")


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    config_file = _config_file(root)
    labels = named_labels(class_names(config_file), options, str(config_file), "the class name(s)")
    images = image_files(root)
    images_folder = _has_images_folder(root)
    if images_folder:
        images = [f for f in images if "images" in f.relative_to(root).parts[:-1]]
    if not images:
        raise AffectkitError(f"{root} has {config_file.name} but no image in an images/ folder.")

    def build(image: Path) -> list[Record | Rejection] | Rejection:
        rel = image.relative_to(root).as_posix()
        label_file = _label_file(image, root)
        lines = numbered_lines(label_file) if label_file.is_file() else []
        if not lines:
            return Rejection(rel, str(image), "label_missing", f"{rel} has no face labelled in "
                                                               f"{label_file.relative_to(root).as_posix()}")
        try:
            info = inspect_image(image)
        except Reject as r:
            return Rejection(rel, str(image), r.kind, r.reason)
        faces: list[Record | Rejection] = []
        for line_no, line in lines:
            source = f"{label_file.relative_to(root).as_posix()} line {line_no}"
            fields = line.split()
            try:
                number = int(fields[0]) if fields[0].isdigit() else None
                if number not in labels:
                    raise Reject("expression_out_of_range", f"{source}: class {fields[0]} is none of "
                                                            f"{config_file.name}'s names")
                if labels[number] == IGNORE:
                    continue
                left, top, right, bottom = _box(fields, source)
                box = (round(left * info.width), round(top * info.height), round((right - left) * info.width),
                       round((bottom - top) * info.height))
                if box[2] <= 0 or box[3] <= 0:
                    raise Reject("box_invalid", f"{source}: the face box has no area")
                crop = face_crop(box, info.width, info.height, source)
            except Reject as r:  # this face alone: the image's other faces stand
                faces.append(Rejection(f"{rel}#{line_no}", f"{label_file}:{line_no}", r.kind, r.reason))
                continue
            digest = hashlib.blake2b(f"{info.digest}|{crop}".encode(), digest_size=10).hexdigest()
            faces.append(Record(f"{rel}#{line_no}", image, labels[number], width=crop[2] - crop[0],
                                  height=crop[3] - crop[1], digest=digest, split=_split(image, root), crop=crop))
        return faces

    where = "labels/" if images_folder else "label files beside the images"
    index = collect(root, NAME, images, build, detail=f"faces boxed in {where}, named by {config_file.name}")
    check_split_given_everywhere(root, (r.split for r in index.records))
    return index
