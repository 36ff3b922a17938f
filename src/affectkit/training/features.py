"""Phase 1 without repeated backbone passes.

A frozen backbone with BatchNorm in eval mode is a fixed function of its input. So its pooled features are computed
once: for the clean training images, for ``phase1_views`` augmented views of each, and for the validation images.
Every phase-1 epoch then draws one stored view per training image and trains the head alone, which costs a tiny
fraction of a backbone pass. The forward passes run in the fastest runtime for the run's precision (see
:func:`affectkit.models.runner.make_runner`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from affectkit.atomic import atomic_path
from affectkit.data.augment import TrainAugmenter
from affectkit.data.datamodule import (
    AffectDataModule,
    AffectDataset,
    _seed_worker_augmenter,
    expression_targets,
    loader_workers,
    lone_last_batch,
    normalise_batch,
)
from affectkit.models.factory import AffectModel
from affectkit.models.runner import Runner, make_runner
from affectkit.progress import reporter
from affectkit.training.hardware import training_device, uses_bf16

def extract(runner: Runner, dataset: Dataset, batch_size: int, workers: int, seed: int, description: str,
            out: np.ndarray) -> None:
    """Fill ``out`` ([len(dataset), D], typically a slice of a memory-mapped file) batch by batch: memory stays
    bounded by one batch however large the data set."""
    # A private generator: the global random stream that phase 1 then draws from (shuffling, dropout) stays the
    # one the naive way would see. Workers get their seeds from it, and from those the augmenters theirs.
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        worker_init_fn=_seed_worker_augmenter, generator=torch.Generator().manual_seed(seed))
    start = 0
    for images, *_ in reporter().track(loader, total=len(loader), description=description):
        features = runner(normalise_batch(images, channels_last=False))
        out[start:start + len(features)] = features
        start += len(features)


def _open_array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)


def compute_phase1_features(model: AffectModel, datamodule: AffectDataModule,
                            state_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(train [1 + views, N, D], val [N, D])``, written straight to ``state_dir`` (memory-mapped: AffectNet's
    290k images x 5 views x 2048 floats are 12 GB) and reused by resumed runs. Each file is written under a
    temporary name and renamed when complete, so a killed run never leaves a partial array in place."""
    train_file, val_file = state_dir / "phase1_train_features.npy", state_dir / "phase1_val_features.npy"
    if not (train_file.is_file() and val_file.is_file()):
        config, data = datamodule.config, datamodule.data
        runner = make_runner(model, config.img_size, bf16=uses_bf16(config, model),
                             device=training_device(config, model))
        batch, workers = max(config.batch_size, 64), loader_workers(config)
        train_positions, val_positions = data.positions("train"), data.positions("val")
        dim = model.num_features
        with atomic_path(train_file) as tmp_train, atomic_path(val_file) as tmp_val:
            train = _open_array(tmp_train, (1 + config.phase1_views, len(train_positions), dim))
            extract(runner, AffectDataset(data, train_positions), batch, workers, config.seed,
                    "Phase-1 features (clean)", train[0])
            for v in range(config.phase1_views):
                view_seed = config.seed * 1000 + v
                augmenter = TrainAugmenter(config.augmentation, seed=view_seed)
                extract(runner, AffectDataset(data, train_positions, augmenter), batch, workers, view_seed,
                        f"Phase-1 features (view {v + 1}/{config.phase1_views})", train[1 + v])
            val = _open_array(tmp_val, (len(val_positions), dim))
            extract(runner, AffectDataset(data, val_positions), batch, workers, config.seed, "Phase-1 features (val)",
                    val)
            train.flush()
            val.flush()
    # Plain arrays over the mapped files: gathers through numpy's memmap subclass are slower
    # (bench/results/implementation_choices.md).
    return np.asarray(np.load(train_file, mmap_mode="r")), np.asarray(np.load(val_file, mmap_mode="r"))


class StoredFeatures(Dataset):
    """Stored features, read a batch at a time: the loader's BatchSampler hands over a list of positions, so each
    step costs one gather instead of a Python call and a collate per image. Given ``[views, N, D]`` features, each
    image of the batch gets one of its stored views (clean or augmented) at random. Memory-mapped arrays stay on
    disk except for the rows a batch reads."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, va: np.ndarray):
        self.features, self.labels, self.va = features, labels, va

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, positions: list[int]):
        positions = np.asarray(positions)
        if self.features.ndim == 2:
            rows = self.features[positions]
        elif len(self.features) == 1:  # no draw: the random stream stays the one the naive way sees
            rows = self.features[0, positions]
        else:
            views = torch.randint(len(self.features), (len(positions),)).numpy()
            rows = self.features[views, positions]
        return (torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)),
                torch.from_numpy(self.labels[positions]), torch.from_numpy(self.va[positions]))


def _batched(dataset: StoredFeatures, sampler: Sampler, batch_size: int, training: bool) -> DataLoader:
    # The head is tiny: worker processes would cost more than they save.
    drop_last = training and lone_last_batch(len(sampler), batch_size)
    return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last=drop_last), batch_size=None)


def feature_loaders(datamodule: AffectDataModule, train: np.ndarray, val: np.ndarray) -> tuple[DataLoader, DataLoader]:
    data, config = datamodule.data, datamodule.config
    tr, va = data.positions("train"), data.positions("val")
    targets = expression_targets(data, config.label_distribution)
    train_set = StoredFeatures(train, targets[tr], data.valence_arousal[tr])
    val_set = StoredFeatures(val, targets[va], data.valence_arousal[va])
    sampler = (datamodule._balanced_sampler(AffectDataset(data, tr)) if config.weighted_sampler
               else RandomSampler(train_set))
    # Validation batches can be as large as memory allows: BatchNorm is in eval mode and the epoch metrics are
    # weighted by batch size, so only the number of steps changes.
    return (_batched(train_set, sampler, config.batch_size, training=True),
            _batched(val_set, SequentialSampler(val_set), max(config.batch_size, 1024), training=False))


__all__ = ["StoredFeatures", "compute_phase1_features", "feature_loaders"]
