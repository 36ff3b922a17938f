"""AFEW-VA (Kossaifi et al. 2017) as released: 600 clips from feature films, every frame annotated for valence and
arousal (integers from -10 to 10) and 68 facial landmarks::

    DATA/001/00000.png ... 00037.png      the frames of clip 001
    DATA/001/001.json                      {"actor": ..., "video_id": "001", "frames": {"00000": {"valence": 2,
                                            "arousal": -3, "landmarks": [[x, y], ... 68]}, ...}}

(the clip folders may sit one level down, as the twelve archives unpack: ``DATA/01/001/``; one clip's folder, such
as ``DATA/001/``, is read alone as a data set of its frames). Every annotated frame
is a face without an expression class (AFEW-VA has none), cropped from the film frame by its landmarks (plus a
margin), with valence and arousal divided by 10. Faces are grouped by the clip's actor (by the clip where the JSON
names none), so no actor falls on two sides of the split; AFEW-VA has no official split, so the usual one is made.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from affectkit.config import NO_EXPRESSION
from affectkit.data.layouts.ckplus import landmark_record
from affectkit.data.records import DatasetIndex, ReadOptions, Record, Reject, Rejection, collect, inspect_image

NAME = "afew_va"
NEEDS = "clip folders such as 001/ holding their frames and 001.json"
SCALE = 10.0  # AFEW-VA's valence and arousal run from -10 to 10


def _annotation_file(clip: Path) -> Path:
    return clip / f"{clip.name}.json"


def _annotation(clip: Path) -> Path | None:
    file = _annotation_file(clip)
    return file if file.is_file() else None


def clip_folders(path: Path) -> list[Path]:
    """The folders of ``path`` (or of its subfolders, one level down) that hold a clip and its ``<clip>.json``; or
    ``path`` alone, where it is one clip's folder."""
    if not path.is_dir():
        return []
    if _annotation(path) is not None:
        return [path]
    folders = sorted(d for d in path.iterdir() if d.is_dir())
    clips = [d for d in folders if _annotation(d) is not None]
    if clips:
        return clips
    return [c for d in folders for c in sorted(c for c in d.iterdir() if c.is_dir()) if _annotation(c) is not None]


def _read_annotation(annotation: Path) -> dict:
    """A clip's JSON, checked to hold ``frames``, a mapping of frame names to their annotations."""
    try:
        content = json.loads(annotation.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Reject("annotation_invalid", f"{annotation.name} is not valid JSON ({exc})") from None
    if not isinstance(content, dict) or not isinstance(content.get("frames"), dict):
        raise Reject("annotation_invalid", f"{annotation.name} has no \"frames\" mapping")
    return content


def find(path: Path, options: ReadOptions) -> Path | None:
    if not path.is_dir():
        return None
    if _annotation(path) is not None:
        return path
    # The first folders decide it (600 clips are not listed twice); one level down for the archives' parts.
    try:
        for folder in sorted(d for d in path.iterdir() if d.is_dir())[:3]:
            if _annotation(folder) is not None or any(_annotation(c) is not None
                                                      for c in sorted(folder.iterdir())[:3] if c.is_dir()):
                return path
    except OSError:  # a folder that cannot be listed holds no AFEW-VA
        return None
    return None


def _dimension(value: object, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Reject(f"{name}_invalid", f"{where}: {name} {value!r} is not a number")
    if not -SCALE <= value <= SCALE:
        raise Reject(f"{name}_out_of_range", f"{where}: {name} {value:g} is outside AFEW-VA's -10..10")
    return float(value) / SCALE


def _landmarks(value: object, where: str) -> np.ndarray:
    try:
        points = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise Reject("landmarks_invalid", f"{where}: its landmarks are not numbers") from None
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise Reject("landmarks_invalid", f"{where}: its landmarks are {points.size} values; 68 points need 136")
    return points


def _image(clip: Path, frame: str) -> Path:
    for suffix in (".png", ".jpg", ".jpeg"):
        if (clip / f"{frame}{suffix}").is_file():
            return clip / f"{frame}{suffix}"
    raise Reject("image_missing", f"{clip.name}/{frame}: no frame image ({frame}.png) beside {clip.name}.json")


def read(root: Path, options: ReadOptions) -> DatasetIndex:
    keys: list[tuple[Path, str, str]] = []
    rejected: list[Rejection] = []
    frames_by_clip: dict[Path, dict] = {}
    for clip in clip_folders(root):
        annotation = _annotation_file(clip)
        try:
            content = _read_annotation(annotation)
        except Reject as r:
            rejected.append(Rejection(clip.name, str(annotation), r.kind, f"{clip.name}: {r.reason}"))
            continue
        actor = content.get("actor")
        group = f"actor:{actor}" if isinstance(actor, str) and actor.strip() else f"clip:{clip.name}"
        frames_by_clip[clip] = content["frames"]
        keys += [(clip, frame, group) for frame in sorted(content["frames"])]

    def build(key: tuple[Path, str, str]) -> Record | Rejection:
        clip, frame, group = key
        where = f"{clip.name}/{frame}"
        try:
            entry = frames_by_clip[clip][frame]
            if not isinstance(entry, dict):
                raise Reject("annotation_invalid", f"{where}: its annotation is not a mapping")
            valence = _dimension(entry.get("valence"), "valence", where)
            arousal = _dimension(entry.get("arousal"), "arousal", where)
            image = _image(clip, frame)
            info = inspect_image(image)
            record_id = image.relative_to(root).as_posix()
            return landmark_record(record_id, image, info, _landmarks(entry.get("landmarks"), where), NO_EXPRESSION,
                                   valence=valence, arousal=arousal, group=group)
        except Reject as r:
            return Rejection(where, str(_annotation_file(clip)), r.kind, f"{where}: {r.reason}")

    index = collect(root, NAME, keys, build, group_source="AFEW-VA's actors",
                    detail="faces cropped by their landmarks; valence and arousal scaled from -10..10")
    index.rejected += rejected
    return index
