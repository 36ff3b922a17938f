"""Labelled face clips, from the two layouts video sets come in:

- a CSV manifest (the multimodal manifest's format, :mod:`affectkit.multimodal.manifest`): a ``face`` column naming
  each clip's video (or image), optional ``start``/``end`` windows in seconds, ``expression`` and/or ``valence`` and
  ``arousal``, ``subject``, ``split``; audio and physio columns, if any, are not read here;
- class folders of videos (AFEW's and many DFEW exports' layout): ``DATA/<class>/*.mp4|avi|mov|mkv``, optionally
  inside ``train/``, ``val/``, ``test/`` folders used as the split. Folder names are matched like image class
  folders' (``Angry``, ``Happiness``, ...).
"""

from __future__ import annotations

from pathlib import Path

from affectkit.data.records import (
    SPLIT_ALIASES,
    Rejection,
    accepted_class_names,
    check_split_given_everywhere,
    class_from_name,
    natural_key,
)
from affectkit.errors import AffectkitError
from affectkit.inference.media import VIDEO_SUFFIXES
from affectkit.multimodal.manifest import MultimodalManifest, Sample, read_manifest


def _subfolders(path: Path) -> list[Path]:
    folders = (d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    return sorted(folders, key=lambda d: d.name.lower())


def _videos(folder: Path) -> list[Path]:
    files = (f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES
             and not f.name.startswith("."))
    return sorted(files, key=lambda f: [natural_key(part) for part in f.relative_to(folder).parts])


def _class_folders(root: Path) -> list[tuple[str | None, Path]]:
    """(split or None, class folder) of every folder holding videos, split folders used as given."""
    top = _subfolders(root)
    split_dirs = [d for d in top if d.name.lower() in SPLIT_ALIASES]
    if not split_dirs:
        return [(None, d) for d in top if _videos(d)]
    outside = [d.name + "/" for d in top if d not in split_dirs and _videos(d)]
    if outside:
        raise AffectkitError(f"{root} holds split folders and also video folders outside them ({', '.join(outside)});"
                             " move those into train/, val/ or test/, or remove them.")
    return [(SPLIT_ALIASES[d.name.lower()], c) for d in split_dirs for c in _subfolders(d) if _videos(c)]


def clip_folders(root: Path) -> MultimodalManifest:
    """The clips of class folders of videos: one sample per video, its class from its folder's name."""
    folders = _class_folders(root)
    if not folders:
        raise AffectkitError(f"{root} has no folder of videos ({', '.join(VIDEO_SUFFIXES)}): give class folders of "
                             "clips (DATA/<class>/*.mp4, optionally inside train/, val/, test/) or a clip manifest "
                             "CSV.")
    unknown = sorted({d.name for _, d in folders if class_from_name(d.name) is None}, key=str.lower)
    if unknown:
        raise AffectkitError(f"{root}: the folder(s) {', '.join(unknown)} are not expression names (accepted, in any "
                             f"case: {accepted_class_names()}); rename them, or list the clips in a manifest CSV.")
    samples = [Sample(video.relative_to(root).as_posix(), {"face": video}, expression=class_from_name(folder.name),
                      split=split) for split, folder in folders for video in _videos(folder)]
    return MultimodalManifest(root, ["face"], samples, [])


def read_clips(path: str | Path, require_labels: bool = True) -> MultimodalManifest:
    """The clips at ``path`` (a manifest CSV or class folders of videos); a manifest's bad rows are quarantined."""
    path = Path(path)
    if not path.exists():
        raise AffectkitError(f"{path} does not exist: give class folders of videos (DATA/<class>/*.mp4, optionally "
                             "inside train/, val/, test/) or a clip manifest CSV (columns face, start, end, "
                             "expression, valence, arousal, subject, split).")
    if path.is_dir():
        return clip_folders(path)
    manifest = read_manifest(path, require_labels=require_labels)
    if "face" not in manifest.modalities:
        raise AffectkitError(f"{path} has no face column: a clip manifest names each clip's video in a face column.")
    samples = [s for s in manifest.samples if "face" in s.files]
    rejected = [Rejection(s.id, str(path), "face_missing", f"{path.name} {s.id}: no face video is given")
                for s in manifest.samples if "face" not in s.files]
    if not samples:
        raise AffectkitError(f"{path}: no row names a face video.")
    check_split_given_everywhere(path, (s.split for s in samples))
    return MultimodalManifest(path, ["face"], samples, manifest.rejected + rejected)
