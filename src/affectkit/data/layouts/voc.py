"""Faces boxed in Pascal VOC's XML, as labelImg saves them and Roboflow exports them ("Pascal VOC")::

    DATA/Annotations/0001.xml   <annotation><filename>0001.jpg</filename>
    DATA/JPEGImages/0001.jpg      <object><name>happy</name><bndbox><xmin>..</xmin>...</bndbox></object>...
    DATA/ImageSets/Main/train.txt (optional: the ids of each split)

or an XML beside each image (labelImg's default; Roboflow's export, in train/, valid/, test/). Each object is a face:
its class is its name (a class name or synonym, or mapped with ``class_map``), its crop the box plus AffectNet's
margin, as YOLO's and COCO's boxes are cropped. An XML naming no face is a background image, quarantined as
``label_missing``. The split is ImageSets/Main's where it lists them, else the one the XML's folder names.
"""

from __future__ import annotations

import glob
import hashlib
import xml.etree.ElementTree as ET
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
    is_image_name,
    split_named,
)

NAME = "voc"
NEEDS = ("Annotations/*.xml beside JPEGImages/, or an .xml beside each image (in the folder or its split folders): "
         "Pascal VOC's objects with a name and a bndbox")


def _is_voc(xml: Path) -> bool:
    parsed = _parsed(xml)
    return not isinstance(parsed, str) and parsed.tag == "annotation"


def xml_files(path: Path) -> list[Path]:
    """The VOC XMLs of a folder: in its Annotations/ folder, else in it or its split folders, beside images."""
    if (path / "Annotations").is_dir():
        folders = [path / "Annotations"]
    else:
        folders = [path, *sorted(d for d in path.iterdir() if d.is_dir() and d.name.lower() in SPLIT_ALIASES)]
    files = [f for folder in folders for f in sorted(folder.glob("*.xml"))]
    return files if any(_is_voc(f) for f in files[:5]) else []  # one damaged XML does not hide the set


def find(path: Path, options: ReadOptions) -> Path | None:
    return path if path.is_dir() and xml_files(path) else None


def _text(element: ET.Element | None, tag: str) -> str:
    found = None if element is None else element.find(tag)
    return (found.text or "").strip() if found is not None else ""


def _image_path(xml: Path, root: Path, filename: str) -> Path:
    """The image an XML names: beside it or in JPEGImages/, else the image of the XML's own name there (labelImg
    keeps the file's name, and an absolute path of the annotator's machine that is not read); beside the XML, to be
    reported missing, where none is found."""
    named = [xml.parent / filename, root / "JPEGImages" / filename] if filename else []
    found = next((c for c in named if c.is_file()), None)
    if found is None:  # a listing of the folder, only where the name given is not there
        found = next((f for folder in (xml.parent, root / "JPEGImages")
                      for f in sorted(folder.glob(f"{glob.escape(xml.stem)}.*")) if is_image_name(f.name)), None)
    return found or xml.parent / (filename or xml.stem)


def _splits(root: Path) -> dict[str, str]:
    """Image id -> split, from ImageSets/Main/<split>.txt (train, val, validation, test, ...; trainval read as train
    where no train list is given)."""
    lists = root / "ImageSets" / "Main"
    files = {f.stem.lower(): f for f in sorted(lists.glob("*.txt"))} if lists.is_dir() else {}
    named = {stem: SPLIT_ALIASES[stem] for stem in files if stem in SPLIT_ALIASES}
    if "trainval" in files and "train" not in named.values():
        named["trainval"] = "train"
    splits: dict[str, str] = {}
    for stem, split in named.items():
        for line in files[stem].read_text(encoding="utf-8", errors="replace").split():
            splits.setdefault(line, split)
    return splits


def _box(obj: ET.Element, source: str) -> tuple[int, int, int, int]:
    box = obj.find("bndbox")
    try:
        x0, y0, x1, y1 = (round(float(_text(box, tag))) for tag in ("xmin", "ymin", "xmax", "ymax"))
    except ValueError:
        raise Reject("box_invalid", f"{source}: bndbox lacks xmin, ymin, xmax or ymax, or one is not a number") from None
    if x1 <= x0 or y1 <= y0:
        raise Reject("box_invalid", f"{source}: the face box has no area")
    return x0, y0, x1 - x0, y1 - y0


def _parsed(xml: Path) -> ET.Element | str:
    """The XML's root, or why it cannot be read."""
    try:
        return ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as exc:
        return f"{xml.name} is not readable XML ({exc})"


def _labels(root: Path, annotations: list[ET.Element | str], options: ReadOptions) -> dict[str, int | str]:
    """Object name -> affectkit class (or ``IGNORE``), for every name an XML gives."""
    names = {_text(obj, "name") for a in annotations if not isinstance(a, str) for obj in a.findall("object")}
    return named_labels({name: name for name in names}, options, str(root), "the object names")


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    files = xml_files(root)
    annotations = [_parsed(xml) for xml in files]
    labels = _labels(root, annotations, options)
    listed = _splits(root)

    def build(key: tuple[Path, ET.Element | str]) -> list[Record | Rejection] | Rejection:
        xml, annotation = key
        rel_xml = xml.relative_to(root).as_posix()
        if isinstance(annotation, str):
            return Rejection(rel_xml, str(xml), "annotation_unreadable", annotation)
        image = _image_path(xml, root, _text(annotation, "filename"))
        rel = image.relative_to(root).as_posix() if image.is_relative_to(root) else str(image)
        objects = annotation.findall("object")
        if not objects:
            return Rejection(rel, str(image), "label_missing", f"{rel_xml} boxes no face")
        split = listed.get(xml.stem) if listed else split_named(xml, root)
        if listed and split is None:
            return Rejection(rel, str(image), "split_missing", f"{xml.stem} is in no list of ImageSets/Main")
        try:
            info = inspect_image(image)
        except Reject as r:
            return Rejection(rel, str(image), r.kind, r.reason)
        faces: list[Record | Rejection] = []
        for number, obj in enumerate(objects, start=1):
            label = labels[_text(obj, "name")]
            if label == IGNORE:
                continue
            source = f"{rel_xml} object {number}"
            try:
                crop = face_crop(_box(obj, source), info.width, info.height, source)
            except Reject as r:  # this face alone: the image's other faces stand
                faces.append(Rejection(f"{rel}#{number}", str(xml), r.kind, r.reason))
                continue
            digest = hashlib.blake2b(f"{info.digest}|{crop}".encode(), digest_size=10).hexdigest()
            faces.append(Record(f"{rel}#{number}", image, label, width=crop[2] - crop[0], height=crop[3] - crop[1],
                                digest=digest, split=split, crop=crop))
        return faces

    index = collect(root, NAME, list(zip(files, annotations)), build, detail=f"faces boxed in {len(files)} XML files")
    check_split_given_everywhere(root, (r.split for r in index.records))
    return index
