"""From a data folder to batches: read and validate, split, cache decoded images, then serve them to Lightning."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler, get_worker_info

from affectkit.config import IMAGENET_MEAN, IMAGENET_STD, NO_EXPRESSION, NUM_CLASSES, Config
from affectkit.data.augment import TrainAugmenter
from affectkit.data.cache import build_cache, default_cache_dir, landmarks_in_cache, open_cache
from affectkit.data.likeness import grey_thumbnails
from affectkit.data.reader import DatasetIndex, Record, read_dataset, reader_options
from affectkit.data.splits import (
    SPLITS,
    check_sides,
    copies_phrase,
    held_out_saved_again,
    held_out_saved_again_phrase,
    load_or_make_splits,
    make_splits,
    place_saved_again,
    save_splits,
    saved_again,
    saved_again_phrase,
    training_copies,
)
from affectkit.progress import reporter, silenced


@dataclass
class PreparedData:
    """Everything the models of one run share: the validated records, their split, and the pixel cache."""

    index: DatasetIndex
    splits: pd.DataFrame
    records: list[Record]  # in cache order (the rows of ``splits``)
    images: np.ndarray  # (N, S, S, 3) uint8
    expression: np.ndarray  # (N,) int64, NO_EXPRESSION for a face annotated for valence/arousal only
    valence_arousal: np.ndarray  # (N, 2) float32, NaN where not annotated
    landmarks: np.ndarray  # (N, 68, 2) float32 in cache pixels, NaN where absent
    # (N, 8) float32, where any record carries annotators' votes (FER+): their distributions, one-hot for the rest
    # (zero for a face without a class)
    expression_distribution: np.ndarray | None = None

    def positions(self, split: str) -> np.ndarray:
        if split == "all":
            return np.arange(len(self.records))
        return np.flatnonzero(self.splits["split"].to_numpy() == split)

    @property
    def has_valence_arousal(self) -> bool:
        return bool(np.isfinite(self.valence_arousal).all(axis=1).any())

    @property
    def trains_expression(self) -> bool:
        """False where no training face has an expression class: the models trained on it are valence/arousal
        models."""
        return bool((self.expression[self.positions("train")] != NO_EXPRESSION).any())

    @property
    def trains_valence_arousal(self) -> bool:
        """False where no training face has valence or arousal (FER2013, RAF-DB, CK+): the models trained on it
        predict expressions only."""
        return bool(np.isfinite(self.valence_arousal[self.positions("train")]).any())


def prepare_data(data: str | Path, config: Config, splits_path: Path | None = None,
                 quarantine_path: Path | None = None, index: DatasetIndex | None = None, use_all: bool = False,
                 progress: bool = True, pixels: bool = True) -> PreparedData:
    """Read (unless ``index`` is given), split, and build the pixel cache.

    ``splits_path``: reuse that ``splits.csv`` or create it there (every model and every resume of a run then sees the
    same split). ``use_all``: serve every valid record as the "test" split, for an external test set. Without
    ``pixels``, no image is decoded: the faces' labels and split alone (``images`` and ``landmarks`` are empty), for
    scoring predictions made elsewhere.
    """
    with silenced(not progress):
        index = index or read_dataset(data, **reader_options(config))
        if quarantine_path is not None:
            index.write_quarantine(quarantine_path)
        fresh = splits_path is None or not splits_path.is_file()
        if use_all:
            splits = pd.DataFrame({"id": [r.id for r in index.records], "split": "test",
                                   "expression": [r.expression for r in index.records]})
        elif splits_path is not None:
            # With pixels, a split made here is saved once its copies saved again are placed (_saved_again_placed).
            splits = load_or_make_splits(splits_path, index.records, config.validation_split, config.test_split,
                                         config.seed, config.max_samples, rejected=index.rejected, save=not pixels)
        else:
            splits = make_splits(index.records, config.validation_split, config.test_split, config.seed,
                                 config.max_samples)
        by_id = {r.id: r for r in index.records}
        records = [by_id[i] for i in splits["id"].astype(str)]
        if pixels:
            cache_dir = build_cache(records, config.img_size, default_cache_dir(config.cache_dir),
                                    workers=cache_workers(config))
            images = open_cache(cache_dir, in_memory=not config.streaming_mode).images
            landmarks = np.stack([landmarks_in_cache(r, config.img_size) for r in records]).astype(np.float32)
            if not use_all and "looks_like" not in splits.columns:
                splits = _saved_again_placed(splits, records, images, made_now=fresh, saved_to=splits_path)
        else:
            images = np.zeros((len(records), 0, 0, 3), dtype=np.uint8)
            landmarks = np.zeros((len(records), 0, 2), dtype=np.float32)
        if not use_all and (copies := training_copies(splits, index.records)):
            reporter().note(f"Warning: {copies_phrase(copies)} in the data's own split: their scores measure memory, "
                            "not generalisation.")
        if not use_all and (alike := held_out_saved_again(splits)):
            reporter().note(f"Warning: {held_out_saved_again_phrase(alike)}: their scores measure memory, not "
                            "generalisation.")
        if not use_all and (copies := saved_again(splits, records)) and copies[0]:
            reporter().note(f"{saved_again_phrase(copies)} (their pixels compared).")
        return PreparedData(
            index=index,
            splits=splits,
            records=records,
            images=images,
            expression=np.array([r.expression for r in records], dtype=np.int64),
            valence_arousal=np.array([[r.valence, r.arousal] for r in records], dtype=np.float32).reshape(-1, 2),
            landmarks=landmarks,
            expression_distribution=label_distributions(records),
        )


def _saved_again_placed(splits: pd.DataFrame, records: list[Record], images: np.ndarray, made_now: bool,
                       saved_to: Path | None) -> pd.DataFrame:
    """``splits`` with its ``looks_like`` and ``copy_of`` columns (:func:`affectkit.data.splits.place_saved_again`).
    Faces move to train only in a split ``made_now``, which is then saved with the columns and its faces' grey
    thumbnails (at ``saved_to``, where it is saved): a split read from a file may have trained models already, so it
    keeps its sides and file."""
    grouped = "group" in splits.columns
    movable = np.array([made_now and not grouped and r.split != side for r, side in zip(records, splits["split"])])
    grey = grey_thumbnails(images, np.arange(len(records)))
    table, moved = place_saved_again(splits, records, grey, movable)
    if moved:
        check_sides(table)
        reporter().note(f"{moved} val/test face(s), each a training face saved again in another format or compression, "
                        "went to train, as identical copies do.")
    if made_now and saved_to is not None:
        save_splits(table, saved_to, grey)
    return table


TIE_BREAK = 1e-6  # added to a given class that ties for the most votes (label_distributions)


def label_distributions(records: list[Record]) -> np.ndarray | None:
    """(N, 8) float32: each record's vote distribution, or its class as one-hot (zeros without a class, which the
    loss leaves out); None when no record has votes."""
    if all(r.expression_distribution is None for r in records):
        return None
    out = np.zeros((len(records), NUM_CLASSES), dtype=np.float32)
    for i, r in enumerate(records):
        if r.expression_distribution is not None:
            out[i] = r.expression_distribution
            if out[i].argmax() != r.expression:
                # A tie its given class shares (a manifest's 3 happy / 3 sad votes, "sad"): a millionth more for
                # that class, so that the training accuracy and macro-F1, which read the top class, score the given
                # one and not the first of the tied.
                out[i, r.expression] += TIE_BREAK
                out[i] /= out[i].sum()
        elif r.has_expression:
            out[i, r.expression] = 1.0
    return out


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def loader_workers(config: Config) -> int:
    """DataLoader worker processes for training batches.

    Training on the CPU, the model's intra-op threads already use every core; worker processes steal cycles from them
    and stall the threads at each barrier (2 cores, 224 px: 0.83-0.88 of the in-memory speed with 2 workers, 0.93
    with none). So CPU runs augment in-process on small machines. A GPU run gives the workers every core but the
    training process's own: on an H200 with 16 cores, 8 workers fed ResNet50 at batch 128 too slowly for it and 15
    did not (bench/results/gpu.md)."""
    if config.num_workers != "auto":
        return int(config.num_workers)
    cores = available_cores()
    if config.accelerator != "cpu" and torch.cuda.is_available():
        return max(1, cores - 1)
    return 0 if cores <= 4 else min(4, cores // 4)


def cache_workers(config: Config) -> int:
    """Processes that decode images into the cache: nothing else runs then, so every core."""
    return max(1, min(8, available_cores() if config.num_workers == "auto" else int(config.num_workers)))


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB -> float32 (N, 3, H, W) with ImageNet statistics, for numpy callers."""
    images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return normalise_batch(images, channels_last=False).numpy()


def normalise_batch(images: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """uint8 (N, 3, H, W) as the loaders deliver it -> float32 with ImageNet statistics, on the batch's device.

    Loaders hand over uint8 so that worker processes ship a quarter of the bytes and do no float work; the
    conversion runs here, in the training process (on the GPU where there is one)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1) * 255
    inv_std = 1.0 / (torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1) * 255)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return (images.float() - mean) * inv_std


class AffectDataset(Dataset):
    """Items ``(uint8 CHW image, expression target, valence/arousal, landmarks)``; the target is the class, or with
    ``distributions`` the (8,) vote distribution (:func:`expression_targets`). With ``warp_on_device`` the augmenter
    only draws each image's flip and warp: the image leaves unwarped with its 3x3 matrix as a fifth element, and the
    LightningModule warps the whole batch on the GPU (:func:`affectkit.data.augment.warp_images`)."""

    def __init__(self, data: PreparedData, positions: np.ndarray, augmenter: TrainAugmenter | None = None,
                 warp_on_device: bool = False, distributions: bool = False):
        self.data = data
        self.positions = positions
        self.augmenter = augmenter
        self.warp_on_device = warp_on_device and augmenter is not None
        self.targets = expression_targets(data, distributions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        k = int(self.positions[i])
        image = self.data.images[k]
        landmarks = self.data.landmarks[k]
        matrix = None
        if self.warp_on_device:
            matrix, landmarks = self.augmenter.draw(image, landmarks)
        elif self.augmenter is not None:
            image, landmarks = self.augmenter(image, landmarks)
        item = (
            torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),  # uint8 CHW: see normalise_batch
            torch.from_numpy(self.targets[k]) if self.targets.ndim == 2 else torch.tensor(self.targets[k]),
            torch.from_numpy(self.data.valence_arousal[k]),
            torch.from_numpy(np.ascontiguousarray(landmarks, dtype=np.float32)),
        )
        return item if matrix is None else (*item, torch.from_numpy(matrix))


def expression_targets(data: PreparedData, distributions: bool) -> np.ndarray:
    """What the expression loss is trained towards: the classes (N,) int64, or with ``distributions``, where the data
    has them, the annotators' vote distributions (N, 8) float32; the class of a distribution is its most voted one,
    which the training step's accuracy and confusion matrix read back with ``argmax``."""
    if distributions and data.expression_distribution is not None:
        return data.expression_distribution
    return data.expression


def lone_last_batch(samples: int, batch_size: int, ranks: int = 1) -> bool:
    """Whether a training epoch would end on a batch of one face, which BatchNorm cannot normalise in training mode
    (it raises): that face then sits the epoch out instead, another one each epoch as the batches are shuffled.
    ``ranks``: the processes sharing each epoch (DDP), each given ceil(samples / ranks) faces."""
    return math.ceil(samples / ranks) % batch_size == 1


def _seed_worker_augmenter(worker_id: int) -> None:
    """A DataLoader worker's set-up: its own augmentation stream, and one OpenCV thread, as PyTorch gives each worker
    one intra-op thread: with a worker per core, threads within a worker would only contend with the other workers."""
    cv2.setNumThreads(1)
    info = get_worker_info()
    augmenter = getattr(info.dataset, "augmenter", None)
    if augmenter is not None:
        augmenter.reseed(info.seed % 2**32)


class AffectDataModule(L.LightningDataModule):
    def __init__(self, data: PreparedData, config: Config):
        super().__init__()
        self.data = data
        self.config = config

    def dataset(self, split: str, augment: bool = False) -> AffectDataset:
        augmenter = TrainAugmenter(self.config.augmentation, seed=self.config.seed) if augment else None
        return AffectDataset(self.data, self.data.positions(split), augmenter,
                             warp_on_device=augment and self.config.augment_on_device,
                             distributions=self.config.label_distribution)

    def _loader(self, dataset: Dataset, shuffle: bool, sampler=None, drop_last: bool = False) -> DataLoader:
        workers = loader_workers(self.config)
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=_seed_worker_augmenter,
            drop_last=drop_last,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train", augment=True)
        sampler = self._balanced_sampler(dataset) if self.config.weighted_sampler else None
        samples = len(dataset) if sampler is None else len(sampler)
        # Under DDP, Lightning hands each process its share of the epoch (the loader's drop_last carried over).
        ranks = self.trainer.world_size if self.trainer is not None else 1
        return self._loader(dataset, shuffle=True, sampler=sampler,
                            drop_last=lone_last_batch(samples, self.config.batch_size, ranks))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"), shuffle=False)

    def class_frequencies(self) -> np.ndarray:
        """Training images per class; trained on vote distributions, the votes' share summed (a class some faces
        got votes for is trained on, even where it is no face's most voted one)."""
        targets = expression_targets(self.data, self.config.label_distribution)[self.data.positions("train")]
        if targets.ndim == 2:
            return targets.sum(axis=0, dtype=np.float64)
        return np.bincount(targets[targets != NO_EXPRESSION], minlength=NUM_CLASSES).astype(np.float64)

    def _balanced_sampler(self, dataset: AffectDataset) -> WeightedRandomSampler:
        counts = self.class_frequencies()
        per_class = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
        labels = self.data.expression[dataset.positions]
        with_class = labels != NO_EXPRESSION
        weights = np.zeros(len(labels))
        weights[with_class] = per_class[labels[with_class]]
        # Faces without a class keep their share of the draws: each weighs what a face with one does on average.
        weights[~with_class] = weights[with_class].mean() if with_class.any() else 1.0
        generator = torch.Generator().manual_seed(self.config.seed)
        return WeightedRandomSampler(torch.as_tensor(weights), num_samples=len(weights), replacement=True, generator=generator)


__all__ = ["SPLITS", "AffectDataModule", "AffectDataset", "PreparedData", "expression_targets", "label_distributions",
           "loader_workers", "normalise", "normalise_batch", "prepare_data"]
