"""Labelled face clips, from the layouts video sets come in. A clip is a video or a folder of its frames.

- a CSV manifest (the multimodal manifest's format, :mod:`affectkit.multimodal.manifest`): a ``face`` column naming
  each clip's video or frame folder (or an image), optional ``start``/``end`` windows in seconds, ``expression``
  and/or ``valence`` and ``arousal``, ``subject``, ``split``; audio and physio columns, if any, are not read here;
- class folders of clips (AFEW's and CAER's layout): ``DATA/<class>/*.mp4|avi|mov|mkv`` or
  ``DATA/<class>/<clip>/*.jpg``, optionally inside split folders (``train/``, ``val/``, ``test/``; AFEW's
  ``Train_AFEW/`` and ``Val_AFEW/`` too) used as the split. Folder names are matched like image class folders'
  (``Angry``, ``Happiness``, ...);
- DFEW as it is distributed: ``DFEW/Clip/clip_224x224/<00001>/*.jpg`` (or ``clip_224x224_16f``, or the videos of
  ``Clip/original``) with the five folds' ``EmoLabel_DataSplit/train(single-labeled)/set_<k>.csv`` and
  ``test(single-labeled)/set_<k>.csv`` (columns ``video_name``, ``label``: 1 happy, 2 sad, 3 neutral, 4 angry,
  5 surprise, 6 disgust, 7 fear);
- FERV39k as it is distributed: the face clips ``2_ClipsforFaceCrop/<Scene>/<Emotion>/<0001>/*.jpg`` with the
  lists ``4_setups/All_scenes/train_All.csv`` and ``test_All.csv`` (a line per clip: ``Action/Sad/0010 Sad``);
- CK+ as it is distributed: each labelled sequence (``cohn-kanade-images/S005/001/``, labelled in ``Emotion/``) is
  a clip from a neutral onset to the expression's apex, its subject the sample's person.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from affectkit.data.layouts import ckplus
from affectkit.data.layouts.class_folders import folder_label, parse_class_map
from affectkit.data.records import (
    IGNORE,
    Reject,
    SPLIT_ALIASES,
    Rejection,
    accepted_class_names,
    check_split_given_everywhere,
    class_from_name,
    frame_files,
    natural_key,
    numbered_lines,
)
from affectkit.errors import AffectkitError
from affectkit.inference.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from affectkit.models.metadata import sha256_of
from affectkit.multimodal.manifest import MultimodalManifest, Sample, read_manifest

DFEW_SPLITS = "EmoLabel_DataSplit"
DFEW_CLIP_FOLDERS = ("clip_224x224", "clip_224x224_16f", "original")  # preferred first: every frame, face-cropped
DFEW_CLASSES = {1: 1, 2: 2, 3: 0, 4: 6, 5: 3, 6: 5, 7: 4}  # DFEW's label -> affectkit's class id
FERV39K_CLIP_FOLDERS = ("2_ClipsforFaceCrop", "3_ClipsforScenImages")  # preferred first: the face crops
FERV39K_SETUPS = ("4_setups/All_scenes", "All_scenes")
CLIPS_HELP = ("give class folders of clips (DATA/<class>/*.mp4 or DATA/<class>/<clip>/*.jpg, optionally inside "
              "train/, val/, test/), DFEW's folder (Clip/ and EmoLabel_DataSplit/), FERV39k's folder "
              "(2_ClipsforFaceCrop/ and 4_setups/), CK+'s (cohn-kanade-images/ and Emotion/) or a clip manifest CSV (columns face, start, end, expression, "
              "valence, arousal, subject, split)")


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _subfolders(path: Path) -> list[Path]:
    return sorted((d for d in path.iterdir() if d.is_dir() and _visible(d)), key=lambda d: d.name.lower())


def _clips(folder: Path) -> list[Path]:
    """The clips under a class folder, at any depth: its videos, and its folders of frames (a folder holding images
    is one clip; what lies below it is not looked at)."""
    found = []
    for parent, dirs, files in os.walk(folder):
        here = Path(parent)
        visible = [f for f in files if not f.startswith(".")]
        if here != folder and any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in visible):
            found.append(here)
            dirs.clear()
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [here / f for f in visible if Path(f).suffix.lower() in VIDEO_SUFFIXES]
    return sorted(found, key=lambda p: [natural_key(part) for part in p.relative_to(folder).parts])


def _split_of(name: str) -> str | None:
    """The split a folder's name stands for: ``train``, ``Val``, ``Train_AFEW``, ``test-set``; else None."""
    name = name.lower()
    return SPLIT_ALIASES.get(name) or SPLIT_ALIASES.get(re.split(r"[_\-\s.]", name)[0])


def _class_folders(root: Path, mapping: dict[str, int | str]) -> list[tuple[str | None, Path, list[Path]]]:
    """(split or None, class folder, its clips) of every folder holding clips, split folders used as given."""
    top = _subfolders(root)
    split_dirs = [d for d in top if _split_of(d.name) and folder_label(d.name, mapping) is None]
    if not split_dirs:
        return [(None, d, clips) for d in top if (clips := _clips(d))]
    outside = [d.name + "/" for d in top if d not in split_dirs and _clips(d)]
    if outside:
        raise AffectkitError(f"{root} holds split folders and also clip folders outside them ({', '.join(outside)});"
                             " move those into train/, val/ or test/, or remove them.")
    return [(_split_of(d.name), c, clips) for d in split_dirs for c in _subfolders(d) if (clips := _clips(c))]


def clip_folders(root: Path, class_map: dict[str, str] | None = None) -> MultimodalManifest:
    """The clips of class folders: one sample per video or frame folder, its class from its class folder's name or
    from ``class_map`` (folder name -> class name, or "ignore" to leave the folder out)."""
    mapping = parse_class_map(class_map or {})
    folders = _class_folders(root, mapping)
    if not folders:
        raise AffectkitError(f"{root} has no folder of clips (videos: {', '.join(VIDEO_SUFFIXES)}; or folders of "
                             f"frames): {CLIPS_HELP}.")
    unknown = sorted({d.name for _, d, _ in folders if folder_label(d.name, mapping) is None}, key=str.lower)
    if unknown:
        raise AffectkitError(f"{root}: the folder(s) {', '.join(unknown)} are not expression names (accepted, in any "
                             f"case: {accepted_class_names()}); map each with --class-map, e.g. --class-map "
                             f"{unknown[0]}=fear (or ={IGNORE} to leave it out), or list the clips in a manifest CSV.")
    samples = [Sample(clip.relative_to(root).as_posix(), {"face": clip}, expression=label, split=split)
               for split, folder, clips in folders if (label := folder_label(folder.name, mapping)) != IGNORE
               for clip in clips]
    if not samples:
        raise AffectkitError(f"{root}: every clip folder is mapped to {IGNORE}.")
    return MultimodalManifest(root, ["face"], samples, [])


def unlabelled_clips(root: Path) -> MultimodalManifest:
    """Every clip under ``root``, at any depth, for prediction: its folders' names are not read (``root`` itself is
    the one clip where it holds frames)."""
    clips = [root] if frame_files(root) else _clips(root)
    if not clips:
        raise AffectkitError(f"{root} holds no clip (videos: {', '.join(VIDEO_SUFFIXES)}; or folders of frames).")
    samples = [Sample(clip.relative_to(root).as_posix() if clip != root else root.name, {"face": clip})
               for clip in clips]
    return MultimodalManifest(root, ["face"], samples, [])


def clips_to_predict(root: Path, class_map: dict[str, str] | None = None) -> MultimodalManifest:
    """Every clip under ``root`` (:func:`unlabelled_clips`), each with its class where every clip sits in a class
    folder (:func:`clip_folders`), so that predictions on labelled clips can be scored against their labels."""
    everything = unlabelled_clips(root)
    try:
        labelled = {sample.id: sample for sample in clip_folders(root, class_map).samples}
    except AffectkitError:  # folders that do not name classes: the clips are read without labels
        return everything
    if set(labelled) != {sample.id for sample in everything.samples}:
        return everything
    return replace(everything, samples=[labelled[sample.id] for sample in everything.samples])


# -- DFEW -----------------------------------------------------------------------------------------------------------


def is_dfew(root: Path) -> bool:
    return (root / DFEW_SPLITS).is_dir() and (root / "Clip").is_dir()


def _dfew_set(root: Path, split: str, fold: int) -> Path:
    """``EmoLabel_DataSplit/<split>(single-labeled)/set_<fold>.csv`` (the single-labelled folder where there are
    several for the split)."""
    folders = [d for d in _subfolders(root / DFEW_SPLITS) if d.name.lower().startswith(split)]
    folders.sort(key=lambda d: "single" not in d.name.lower())
    for folder in folders:
        if (folder / f"set_{fold}.csv").is_file():
            return folder / f"set_{fold}.csv"
    found = sorted({f.name for d in folders for f in d.glob("set_*.csv")}, key=natural_key)
    raise AffectkitError(f"{root / DFEW_SPLITS}: no {split} set_{fold}.csv (found: {', '.join(found) or 'none'}); "
                         "choose a fold with --fold.")


def _dfew_clip_folder(root: Path) -> Path:
    for name in DFEW_CLIP_FOLDERS:
        if (root / "Clip" / name).is_dir():
            return root / "Clip" / name
    raise AffectkitError(f"{root / 'Clip'} holds none of DFEW's clip folders ({', '.join(DFEW_CLIP_FOLDERS)}).")


def _listed_clip(source: str, listing: Path, clip_folder: Path, name: str, clip: Path | None, expression: int | None,
                 split: str, label_problem: str) -> Sample | Rejection:
    """A clip a data set's list names: its sample, or why it cannot be one."""
    if expression is None:
        return Rejection(source, str(listing), "label_invalid", f"{source}: {label_problem}")
    if clip is None:
        return Rejection(source, str(clip_folder / name), "face_missing",
                         f"{source}: clip {name} is not in {clip_folder}")
    return Sample(f"{clip_folder.name}/{name}", {"face": clip}, expression=expression, split=split)


def _dfew_clip(folder: Path, name: str) -> Path | None:
    """Clip ``name`` of a DFEW clip folder: its folder of frames, or its video."""
    if (folder / name).is_dir():
        return folder / name
    return next((folder / f"{name}{s}" for s in VIDEO_SUFFIXES if (folder / f"{name}{s}").is_file()), None)


def dfew_clips(root: Path, fold: int = 1) -> MultimodalManifest:
    """One fold of DFEW: its train and test clips, each labelled as the fold's CSVs say (val is carved from train
    later, as for any data set that gives no val)."""
    clip_folder = _dfew_clip_folder(root)
    samples: list[Sample] = []
    rejected: list[Rejection] = []
    for split in ("train", "test"):
        csv = _dfew_set(root, split, fold)
        table = pd.read_csv(csv, dtype=str)
        table.columns = [c.strip().lower() for c in table.columns]
        if not {"video_name", "label"} <= set(table.columns):
            raise AffectkitError(f"{csv} has no video_name and label columns (found: {', '.join(table.columns)}).")
        for line, (video, label) in enumerate(zip(table["video_name"], table["label"]), start=2):
            source = f"{csv.parent.name}/{csv.name} line {line}"
            name = str(video).strip().zfill(5)
            expression = DFEW_CLASSES.get(int(label)) if str(label).strip().isdigit() else None
            item = _listed_clip(source, csv, clip_folder, name, _dfew_clip(clip_folder, name), expression, split,
                                f"label {label!r} is not one of DFEW's 1-7")
            (samples if isinstance(item, Sample) else rejected).append(item)
    if not samples:
        raise AffectkitError(f"{root}: no clip of fold {fold} was found in {clip_folder}.")
    return MultimodalManifest(root, ["face"], samples, rejected)


# -- FERV39k --------------------------------------------------------------------------------------------------------


def _ferv39k_setups(root: Path) -> Path | None:
    return next((root / p for p in FERV39K_SETUPS if (root / p / "train_All.csv").is_file()), None)


def _ferv39k_clip_folder(root: Path) -> Path | None:
    """The folder of FERV39k's clips (scene folders inside); an archive unpacked into a folder of its own name
    (``2_ClipsforFaceCrop/2_ClipsforFaceCrop/``) is looked into."""
    for name in FERV39K_CLIP_FOLDERS:
        folder = root / name
        if (folder / name).is_dir():
            folder = folder / name
        if folder.is_dir():
            return folder
    return None


def is_ferv39k(root: Path) -> bool:
    return _ferv39k_setups(root) is not None and _ferv39k_clip_folder(root) is not None


def _setup_lines(listing: Path) -> list[tuple[int, str, str]]:
    """(line number, clip path, label) of a FERV39k list: ``Action/Sad/0010 Sad`` per line (a comma also
    separates; a header line is skipped)."""
    rows = []
    for number, line in numbered_lines(listing):
        fields = re.split(r"[\s,]+", line.strip())
        if len(fields) >= 2 and not (number == 1 and "/" not in fields[0]):
            rows.append((number, fields[0], fields[-1]))
    return rows


def ferv39k_clips(root: Path) -> MultimodalManifest:
    """FERV39k's train and test clips as its ``All_scenes`` lists give them (val is carved from train later)."""
    setups, clip_folder = _ferv39k_setups(root), _ferv39k_clip_folder(root)
    assert setups is not None and clip_folder is not None  # is_ferv39k said so
    samples: list[Sample] = []
    rejected: list[Rejection] = []
    for split in ("train", "test"):
        listing = setups / f"{split}_All.csv"
        if not listing.is_file():
            raise AffectkitError(f"{setups}: {listing.name} is missing; FERV39k's All_scenes lists are "
                                 "train_All.csv and test_All.csv.")
        for number, name, label in _setup_lines(listing):
            clip = clip_folder / name
            item = _listed_clip(f"{listing.name} line {number}", listing, clip_folder, name,
                                clip if clip.is_dir() else None, class_from_name(label), split,
                                f"{label!r} is not an expression name")
            (samples if isinstance(item, Sample) else rejected).append(item)
    if not samples:
        raise AffectkitError(f"{root}: no clip listed in {setups} was found in {clip_folder}.")
    return MultimodalManifest(root, ["face"], samples, rejected)


# -- CK+ -------------------------------------------------------------------------------------------------------------


def ckplus_clips(root: Path) -> MultimodalManifest:
    """CK+'s labelled sequences as clips (frame folders, onset to apex), each with its subject; no split is given."""
    folders = ckplus.sequence_folders(root)
    assert folders is not None  # the caller checked
    images, emotions = folders
    samples: list[Sample] = []
    rejected: list[Rejection] = []
    for label_file in ckplus.labelled_sequences(emotions):
        subject, sequence = label_file.parent.parent.name, label_file.parent.name
        clip = images / subject / sequence
        source = f"{ckplus.EMOTIONS}/{subject}/{sequence}"
        try:
            expression = ckplus.sequence_label(label_file)
        except Reject as r:
            rejected.append(Rejection(f"{subject}/{sequence}", str(label_file), r.kind, f"{source}: {r.reason}"))
            continue
        if not clip.is_dir() or not frame_files(clip):
            rejected.append(Rejection(f"{subject}/{sequence}", str(clip), "face_missing",
                                      f"{source}: no frames in {ckplus.IMAGES}/{subject}/{sequence}"))
            continue
        samples.append(Sample(f"{subject}/{sequence}", {"face": clip}, expression=expression, group=subject))
    if not samples:
        raise AffectkitError(f"{root}: no labelled CK+ sequence has its frames in {images}.")
    return MultimodalManifest(root, ["face"], samples, rejected)


def read_clips(path: str | Path, require_labels: bool = True, fold: int = 1,
               class_map: dict[str, str] | None = None) -> MultimodalManifest:
    """The clips at ``path`` (a manifest CSV, DFEW's, FERV39k's or CK+'s folder, or class folders of clips; for
    prediction also one video); bad rows are quarantined.
    ``fold`` chooses DFEW's split; ``class_map`` names class folders that are not expression names. Without
    ``require_labels`` (prediction) a folder's clips are read whatever its folders are called."""
    path = Path(path)
    if not path.exists():
        raise AffectkitError(f"{path} does not exist: {CLIPS_HELP}.")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        if require_labels:
            raise AffectkitError(f"{path} is one video, with no label to learn from: {CLIPS_HELP}.")
        return MultimodalManifest(path.parent, ["face"], [Sample(path.name, {"face": path})], [])
    if path.is_dir():
        if is_dfew(path):
            return dfew_clips(path, fold)
        if is_ferv39k(path):
            return ferv39k_clips(path)
        if ckplus.sequence_folders(path) is not None:
            return ckplus_clips(path)
        return clip_folders(path, class_map) if require_labels else clips_to_predict(path, class_map)
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


CLIP_DIGEST_BYTES = 1 << 16  # read from each end of a video: its container header and its last frames


def clip_digest(clip: Path) -> str:
    """What a clip is known by wherever it is read from (a copy of a data set): a video's size and the bytes at its
    two ends; a folder's frames by their names and sizes. Cheap (a video is not read whole) and, for clips of real
    footage, specific: two clips share it only where they are copies. Blank where the clip cannot be read."""
    digest = hashlib.blake2b(digest_size=10)
    try:
        if clip.is_dir():
            for frame in frame_files(clip):
                digest.update(f"{frame.name}:{frame.stat().st_size};".encode())
        else:
            size = clip.stat().st_size
            with open(clip, "rb") as f:
                digest.update(f"{size};".encode() + f.read(CLIP_DIGEST_BYTES))
                f.seek(max(0, size - CLIP_DIGEST_BYTES))
                digest.update(f.read())
    except OSError:
        return ""
    return digest.hexdigest()


def clips_signature(manifest: MultimodalManifest) -> dict[str, Any]:
    """What a read of the clips depends on besides the model reading them: the manifest's content, and each clip's
    file by its path, size and modification time (hashing every video of a large set would take longer than reading
    it)."""
    clips = [s.files["face"] for s in manifest.samples]
    files = [(str(path), stat.st_size, stat.st_mtime_ns) for path, stat in zip(clips, map(Path.stat, clips))]
    return {"manifest_sha256": sha256_of(manifest.path) if manifest.path.is_file() else None,
            "files_sha256": hashlib.sha256(json.dumps(files).encode()).hexdigest()}
