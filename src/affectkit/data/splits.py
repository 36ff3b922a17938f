"""Stratified, seeded train/val/test splits (subject-disjoint where records name a subject), saved as
``splits.csv`` and reused by every model of a run. Copies of one image (identical files, as scraped sets and their
re-uploads hold) are kept on one side of a split affectkit makes, and counted where the data's own split has them on
two: a test face whose copy trained the model scores memory, not generalisation. So are copies saved again
(converted, re-compressed: :mod:`affectkit.data.likeness`), once the faces are decoded (``place_saved_again``)."""

from __future__ import annotations

import dataclasses
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from affectkit.atomic import atomic_path
from affectkit.config import CLASS_NAMES, NO_EXPRESSION
from affectkit.data.likeness import THUMBNAIL_SIZE, copy_pairs
from affectkit.data.reader import DatasetIndex, Record
from affectkit.data.records import Rejection
from affectkit.errors import AffectkitError, one_line

SPLITS = ("train", "val", "test")


def random_subsample(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``limit`` of ``n`` items drawn at random, in order; all of them where ``limit`` is None."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def stratified_subsample(labels: np.ndarray, max_samples: int, seed: int) -> np.ndarray:
    """Indices of a class-proportional subsample of ``max_samples`` items (every class keeps at least one)."""
    if max_samples >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts * max_samples / len(labels)).astype(int))
    # Hand the rounding remainder to the classes with the largest fractional parts.
    remainder = max_samples - quota.sum()
    if remainder > 0:
        frac = counts * max_samples / len(labels) - np.floor(counts * max_samples / len(labels))
        for i in np.argsort(-frac)[:remainder]:
            quota[i] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[: q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """A split name per item; each class is divided in the given proportions, so small classes reach every split."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=object)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) >= 3:  # keep one of each class in every split when the class allows it
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        out[idx[:n_test]] = "test"
        out[idx[n_test : n_test + n_val]] = "val"
        out[idx[n_test + n_val :]] = "train"
    return out


def _carve(labels: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int) -> np.ndarray:
    """A mask of about ``fraction`` of the items, stratified by label; whole groups only when there are groups."""
    if groups is None:
        rng = np.random.default_rng(seed)
        mask = np.zeros(len(labels), dtype=bool)
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            n = int(round(len(idx) * fraction))
            mask[idx[: max(n, 1) if len(idx) >= 3 else n]] = True  # every class in every split when it allows
        return mask
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise AffectkitError(f"A subject-disjoint split cannot divide {n_groups} subject(s): every split needs its own "
                             "subjects, so the data needs at least one per split.")
    n_splits = max(2, min(n_groups, int(round(1 / fraction))))
    if np.unique(labels, return_counts=True)[1].max() < n_splits:
        # Every class is smaller than the folds (a handful of faces): scikit-learn cannot stratify that, and whole
        # groups matter more than balance.
        folds = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    else:
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Classes with fewer members than folds are expected in small sets; the fold is still the best stratified one.
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        _, held_out = next(folds.split(np.zeros(len(labels)), labels, groups))
    mask = np.zeros(len(labels), dtype=bool)
    mask[held_out] = True
    return mask


def _split_pool(labels: np.ndarray, groups: np.ndarray | None, carve: list[str], val_fraction: float,
                test_fraction: float, seed: int) -> np.ndarray:
    """Split names for a pool of training items, carving off the ``carve`` splits in the configured proportions."""
    out = np.full(len(labels), "train", dtype=object)
    rest = np.arange(len(labels))
    if "test" in carve:
        test = _carve(labels, groups, test_fraction, seed)
        out[test] = "test"
        rest = np.flatnonzero(~test)
    if "val" in carve:
        share = val_fraction / (1 - test_fraction) if "test" in carve else val_fraction
        val = _carve(labels[rest], None if groups is None else groups[rest], share, seed + 1)
        out[rest[val]] = "val"
    return out


def affect_quadrants(records: list[Record]) -> np.ndarray:
    """Each face's quadrant of the valence/arousal plane (0-3; 4 without both): the strata of a split where no face
    has an expression class, so that every split spans the plane."""
    va = np.array([(r.valence, r.arousal) for r in records], dtype=float).reshape(-1, 2)
    quadrant = (va[:, 0] >= 0).astype(int) * 2 + (va[:, 1] >= 0).astype(int)
    return np.where(np.isfinite(va).all(axis=1), quadrant, 4)


def _copies_together(split: np.ndarray, digests: list[str], assigned: np.ndarray) -> np.ndarray:
    """``split`` with each image's copies among the ``assigned`` positions (those this split chose, not the data)
    moved to the side of its first copy."""
    out = split.copy()
    first: dict[str, str] = {}
    for i in np.flatnonzero(assigned):
        out[i] = first.setdefault(digests[i], out[i])
    return out


def _held_out_counts(splits: pd.DataFrame, marked: pd.Series) -> dict[str, int]:
    """For val and test, the number of their faces ``marked`` (a boolean per row of ``splits``), where not 0."""
    counts = {name: int((marked & (splits["split"] == name)).sum()) for name in ("val", "test")}
    return {name: n for name, n in counts.items() if n}


def _held_out_phrase(counts: dict[str, int], what: str) -> str:
    """"3 val and 12 test face(s) <what>"."""
    return " and ".join(f"{n} {name}" for name, n in counts.items()) + f" face(s) {what}"


def training_copies(splits: pd.DataFrame, records: list[Record]) -> dict[str, int]:
    """For val and test: how many of their faces are copies (identical pixels) of a training face."""
    pixels = {r.id: r.pixels_key for r in records}
    sides = splits["id"].map(pixels)
    return _held_out_counts(splits, sides.isin(set(sides[splits["split"] == "train"])))


def copies_phrase(copies: dict[str, int]) -> str:
    """``training_copies`` in words: "3 val and 12 test face(s) identical to a training face"."""
    return _held_out_phrase(copies, "identical to a training face")


def place_saved_again(splits: pd.DataFrame, records: list[Record], grey: np.ndarray,
                     movable: np.ndarray) -> tuple[pd.DataFrame, int]:
    """``splits`` with two columns on faces saved again (another file of one picture; the same pixels are counted
    by ``training_copies`` and the layout line): ``copy_of``, for each face that is an earlier face saved again, that
    face's id; ``looks_like``, for each val or test face that is a training face saved again, that training face's
    id. Such a val or test face at one of the ``movable`` positions (the sides this split chose, in data without
    subjects to keep apart) goes to train instead, as copies of one image go to one side; returns the table and how
    many went. ``records`` and ``grey`` (the faces' grey thumbnails,
    :func:`affectkit.data.likeness.grey_thumbnails`) are in the order of the rows of ``splits``."""
    table = splits.copy()
    side = table["split"].to_numpy(dtype=object)
    keys = [r.pixels_key for r in records]
    first_at: dict[str, int] = {}
    for position, key in enumerate(keys):
        first_at.setdefault(key, position)
    pairs = [(i, j) for i, j in zip(*(part.tolist() for part in copy_pairs(grey))) if keys[i] != keys[j]]
    copy_of = np.full(len(table), "", dtype=object)
    for i, j in sorted(pairs):
        if not copy_of[j] and first_at[keys[j]] == j:  # a face with the pixels of an earlier one is counted as such
            copy_of[j] = records[i].id
    trained = {keys[i] for i in np.flatnonzero(side == "train")}
    twins: dict[int, int] = {}
    for i, j in pairs:
        for held, twin in ((i, j), (j, i)):
            if side[held] != "train" and side[twin] == "train" and keys[held] not in trained:
                twins.setdefault(held, twin)
    looks_like = np.full(len(table), "", dtype=object)
    for held, twin in twins.items():
        if movable[held]:
            side[held] = "train"
        else:
            looks_like[held] = records[twin].id
    table["split"] = side
    table["looks_like"] = looks_like
    table["copy_of"] = copy_of
    return table, int(sum(movable[held] for held in twins))


def saved_again_phrase(copies: tuple[int, int]) -> str:
    """``saved_again`` in words: "5 face(s) another face saved again in another format or compression, 2 of them
    labelled otherwise"."""
    phrase = f"{copies[0]} face(s) another face saved again in another format or compression"
    return phrase + (f", {copies[1]} of them labelled otherwise" if copies[1] else "")


def saved_again(splits: pd.DataFrame, records: list[Record]) -> tuple[int, int] | None:
    """How many faces of ``splits`` are an earlier face saved again (``place_saved_again``' ``copy_of``), and how
    many of those carry another expression than it in ``records`` (the annotators disagreed with themselves); None
    where the faces were not compared."""
    if "copy_of" not in splits.columns:
        return None
    expression = {r.id: r.expression for r in records}
    copies = splits.loc[splits["copy_of"] != "", ["id", "copy_of"]]
    return len(copies), int(sum(expression[a] != expression[b] for a, b in zip(copies["id"], copies["copy_of"])))


def held_out_saved_again(splits: pd.DataFrame) -> dict[str, int]:
    """For val and test: how many of their faces ``place_saved_again`` found to be a training face saved again
    (none where the table has no ``looks_like`` column)."""
    if "looks_like" not in splits.columns:
        return {}
    return _held_out_counts(splits, splits["looks_like"] != "")


def held_out_saved_again_phrase(counts: dict[str, int]) -> str:
    """``held_out_saved_again`` in words: "2 test face(s) a training face saved again in another format or
    compression"."""
    return _held_out_phrase(counts, "a training face saved again in another format or compression")


def classes_unscored(splits: pd.DataFrame) -> list[str]:
    """"no Fear face in val or test (2 in all)" for each class val or test lacks: its recall goes unmeasured there,
    and one val lacks does not weigh in the choice of the checkpoint."""
    labelled = splits[splits["expression"] != NO_EXPRESSION]
    phrases = []
    for label, sides in labelled.groupby("expression")["split"]:
        if missing := [name for name in ("val", "test") if name not in set(sides)]:
            phrases.append(f"no {CLASS_NAMES[int(label)]} face in {' or '.join(missing)} ({len(sides)} in all)")
    return phrases


def _strata(records: list[Record]) -> np.ndarray:
    """What a split is stratified by: each record's class, or where no record has one, its valence/arousal quadrant."""
    expression = np.array([r.expression for r in records])
    return expression if (expression != NO_EXPRESSION).any() else affect_quadrants(records)


def _subject(record: Record) -> str:
    """The subject a record is kept with; an ungrouped record among grouped ones is its own subject."""
    return record.group or f"id:{record.id}"


def make_splits(records: list[Record], val_fraction: float, test_fraction: float, seed: int,
                max_samples: int | None = None) -> pd.DataFrame:
    """train/val/test per record. A split the data carries is used as given, and a missing val or test is carved
    from its train records; otherwise the data is split in the configured proportions. Records with a ``group``
    (subject) are split subject-disjoint, with a ``group`` column in the table. Copies of one image go where the
    first of them goes, wherever this function chooses the side. Each face's content digest is kept (``digest``), so
    that the faces a model was fit on are known wherever their files are read again (a copy, another data set)."""
    expression, labels = np.array([r.expression for r in records]), _strata(records)
    keep = stratified_subsample(labels, max_samples, seed) if max_samples else np.arange(len(records))
    expression, labels = expression[keep], labels[keep]
    grouped = any(records[i].group is not None for i in keep)
    groups = np.array([_subject(records[i]) for i in keep], dtype=object) if grouped else None
    given = [records[i].split for i in keep]
    assigned = np.ones(len(keep), dtype=bool)
    if all(s is not None for s in given):
        split = np.array(given, dtype=object)  # the data's own split, as given
        pool = np.flatnonzero(split == "train")
        carve = [s for s in ("val", "test") if s not in set(given)]
        assigned[:] = False
        if carve and len(pool):
            split[pool] = _split_pool(labels[pool], None if groups is None else groups[pool], carve, val_fraction,
                                      test_fraction, seed)
            assigned[pool] = True
    elif grouped:
        split = _split_pool(labels, groups, ["val", "test"], val_fraction, test_fraction, seed)
    else:
        split = stratified_split(labels, val_fraction, test_fraction, seed)
    split = _copies_together(split, [records[i].pixels_key for i in keep], assigned)
    table = pd.DataFrame({"id": [records[i].id for i in keep], "split": split, "expression": expression,
                          "digest": [records[i].digest for i in keep]})
    if grouped:
        table["group"] = groups
    return table


def cross_validation_splits(records: list[Record], folds: int, val_fraction: float, seed: int,
                            max_samples: int | None = None) -> list[pd.DataFrame]:
    """A split table per fold of a ``folds``-fold cross-validation: every face (of a stratified subsample of
    ``max_samples``) is in the test split of one fold, val is carved from the other folds' faces as
    :func:`make_splits` carves a missing val. Folds are stratified by expression, subject-disjoint where records have
    subjects, and keep copies of one image together; the data's own split is set aside."""
    if folds < 2:
        raise AffectkitError(f"--folds {folds}: a cross-validation needs at least 2 folds.")
    labels = _strata(records)
    if max_samples:
        keep = stratified_subsample(labels, max_samples, seed)
        records, labels = [records[i] for i in keep], labels[keep]
    grouped = any(r.group is not None for r in records)
    units = np.array([_subject(r) if grouped else r.pixels_key for r in records], dtype=object)
    if folds > len(set(units)):
        unit = "subjects" if grouped else "distinct images"
        raise AffectkitError(f"--folds {folds}: the data has {len(set(units))} {unit}, and every fold needs its own.")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")  # as in _carve
        held_out = [test for _, test in StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(
            np.zeros(len(records)), labels, units)]
    tables = []
    for test in held_out:
        sides = np.full(len(records), "train", dtype=object)
        sides[test] = "test"
        fold = [dataclasses.replace(r, split=side) for r, side in zip(records, sides)]
        tables.append(make_splits(fold, val_fraction, 0.0, seed))
    return tables


def split_description(splits: pd.DataFrame, index: DatasetIndex) -> str:
    """One line on how the split was made, for the summary and report: ``train/val/test 96/24/30; train/test as
    given, val carved from train; grouped by group_pattern ^(S\\d+)_: 31 subjects, none on two sides``."""
    counts = splits["split"].value_counts()
    parts = ["train/val/test " + "/".join(str(int(counts.get(s, 0))) for s in SPLITS)]
    given = index.given_splits()
    if given:
        carved = [s for s in ("val", "test") if s not in given]
        parts.append(f"{'/'.join(given)} as given" + (f", {' and '.join(carved)} carved from train" if carved else ""))
    elif (splits["expression"] != NO_EXPRESSION).any():
        parts.append("stratified by expression")
    else:
        parts.append("stratified by valence/arousal quadrant")
    if "group" in splits.columns:
        sides = splits.groupby(splits["group"].astype(str))["split"].nunique()
        shared = int((sides > 1).sum())
        overlap = "none on two sides" if not shared else f"{shared} on two sides of the data's own split"
        parts.append(f"grouped by {index.group_source or 'subject'}: {len(sides)} subjects, {overlap}")
    if copies := training_copies(splits, index.records):
        parts.append(f"{copies_phrase(copies)} (the data's own split)")
    if alike := held_out_saved_again(splits):
        parts.append(held_out_saved_again_phrase(alike))
    return "; ".join(parts + classes_unscored(splits))


def thumbnails_beside(splits_path: Path) -> Path:
    """Where the grey thumbnails of a split's faces are kept (arrays ``id`` and ``grey``), so that the faces a model
    was fit on are known saved again too: ``splits_thumbnails.npz``."""
    return splits_path.with_name(f"{splits_path.stem}_thumbnails.npz")


def check_sides(table: pd.DataFrame) -> None:
    for name in SPLITS:
        if not (table["split"] == name).any():
            raise AffectkitError(f"The {name} split is empty: the data set has too few valid samples ({len(table)}).")


def load_or_make_splits(path: Path, records: list[Record], val_fraction: float, test_fraction: float, seed: int,
                        max_samples: int | None = None, rejected: Sequence[Rejection] = (),
                        save: bool = True) -> pd.DataFrame:
    """Reuse ``path`` when it exists (so every model and every resume sees the same split), else create it and write
    it there (unless ``save`` is off: then the caller saves it once complete). ``rejected``: the data set's
    quarantined samples, named where the split holds one."""
    if path.is_file():
        table = pd.read_csv(path, dtype={"id": str, "group": str, "digest": str, "looks_like": str, "copy_of": str})
        for column in {"looks_like", "copy_of"} & set(table.columns):
            table[column] = table[column].fillna("")
        known = {r.id for r in records}
        unknown = [i for i in table["id"] if i not in known]
        if unknown:
            why = {r.id: r.reason for r in rejected}
            quarantined = [i for i in unknown if i in why]
            if quarantined:
                raise AffectkitError(
                    f"{path} names {len(quarantined)} sample(s) that this reading of the data quarantined (first: "
                    f"{quarantined[0]!r}: {why[quarantined[0]]}); they were valid when the split was made: mend or "
                    "restore them, or delete the file to split again.")
            raise AffectkitError(
                f"{path} names {len(unknown)} sample(s) that are not valid in this data set (first: {unknown[0]!r}); "
                "it belongs to other data: use another --out folder or delete it."
            )
        if not set(table["split"]) <= set(SPLITS):
            raise AffectkitError(f"{path}: split values must be train, val or test.")
        return table
    table = make_splits(records, val_fraction, test_fraction, seed, max_samples)
    check_sides(table)
    if save:
        save_splits(table, path)
    return table


def save_splits(table: pd.DataFrame, path: Path, grey: np.ndarray | None = None) -> None:
    """``table`` written to ``path`` whole or not at all, and the faces' ``grey`` thumbnails (where given) to
    ``thumbnails_beside(path)`` before it: a run stopped between the two leaves no splits.csv, and the next makes the
    same split again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if grey is not None:
        with atomic_path(thumbnails_beside(path)) as tmp, tmp.open("wb") as file:
            np.savez(file, id=np.array(table["id"], dtype=str), grey=grey)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def read_thumbnails(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ids and grey thumbnails ``save_splits`` kept at ``path``, checked."""
    try:
        with np.load(path, allow_pickle=False) as kept:
            ids, grey = kept["id"], kept["grey"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise AffectkitError(f"{path} cannot be read as the faces' thumbnails ({one_line(exc)}): restore it, or delete "
                             "it to know the faces by their files alone.") from None
    if grey.dtype != np.uint8 or grey.shape != (len(ids), THUMBNAIL_SIZE * THUMBNAIL_SIZE):
        raise AffectkitError(f"{path} holds {grey.dtype} thumbnails of shape {grey.shape}, not one row of "
                             f"{THUMBNAIL_SIZE}x{THUMBNAIL_SIZE} uint8 grey levels for each of its {len(ids)} faces: "
                             "restore it, or delete it to know the faces by their files alone.")
    return ids, grey
