"""Phase 1 without repeated backbone passes.

A frozen backbone with BatchNorm in eval mode is a fixed function of its input. So its pooled features are computed
once: for the clean training images, for ``phase1_views`` augmented views of each, and for the validation images.
Every phase-1 epoch then draws one stored view per training image and trains the head alone, which costs a tiny
fraction of a backbone pass. The forward passes run in the fastest runtime for the run's precision (see
``make_runner``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from affectkit.data.augment import TrainAugmenter
from affectkit.data.datamodule import (
    AffectDataModule,
    AffectDataset,
    _seed_worker_augmenter,
    loader_workers,
    normalise_batch,
)
from affectkit.models.factory import AffectModel
from affectkit.progress import track
from affectkit.training.hardware import uses_bf16

Runner = Callable[[torch.Tensor], np.ndarray]


def torch_runner(backbone: torch.nn.Module, bf16: bool = False) -> Runner:
    device = next(backbone.parameters()).device

    @torch.inference_mode()
    def run(x: torch.Tensor) -> np.ndarray:
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return backbone(x).float().cpu().numpy()

    return run


def onnx_runner(backbone: torch.nn.Module, img_size: int) -> Runner | None:
    """The backbone exported to a temporary ONNX file and run by onnxruntime; None where that is unavailable."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="affectkit-phase1-") as tmp:  # the session keeps the graph in memory
        path = Path(tmp) / "backbone.onnx"
        try:
            torch.onnx.export(backbone.cpu().eval(), torch.zeros(1, 3, img_size, img_size), str(path),
                              input_names=["image"], output_names=["features"],
                              dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}}, opset_version=17,
                              dynamo=False)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception:  # an architecture the exporter cannot handle: PyTorch does the work instead
            return None
    return lambda x: session.run(None, {"image": x.numpy()})[0]


def make_runner(model: AffectModel, img_size: int, bf16: bool = False) -> Runner:
    """The fastest way here: PyTorch under bf16 autocast where the run trains in bf16 (the features then match what
    the naive way would compute; on a CPU with native bf16 it beats fp32 onnxruntime 1.6x), else onnxruntime on a CPU
    (1.2-1.8x PyTorch eager in fp32), else PyTorch."""
    backbone = model.backbone.eval()
    if bf16:
        return torch_runner(backbone, bf16=True)
    if next(backbone.parameters()).device.type == "cpu":
        runner = onnx_runner(backbone, img_size)
        if runner is not None:
            return runner
    return torch_runner(backbone)


def extract(runner: Runner, dataset: Dataset, batch_size: int, workers: int, description: str,
            progress: bool) -> np.ndarray:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        worker_init_fn=_seed_worker_augmenter)
    batches = track(loader, total=len(loader), description=description, enabled=progress)
    chunks = [runner(normalise_batch(images, channels_last=False)) for images, *_ in batches]
    return np.concatenate(chunks).astype(np.float32)


def compute_phase1_features(model: AffectModel, datamodule: AffectDataModule, state_dir: Path,
                            progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(train [views, N, D], val [N, D])``, computed once and stored in ``state_dir`` for resumed runs."""
    train_file, val_file = state_dir / "phase1_train_features.npy", state_dir / "phase1_val_features.npy"
    if train_file.is_file() and val_file.is_file():
        return np.load(train_file, mmap_mode="r"), np.load(val_file, mmap_mode="r")
    config = datamodule.config
    runner = make_runner(model, config.img_size, bf16=uses_bf16(config, model))
    data = datamodule.data
    batch, workers = max(config.batch_size, 64), loader_workers(config)
    views = [extract(runner, AffectDataset(data, data.positions("train")), batch, workers,
                     "Phase-1 features (clean)", progress)]
    for v in range(config.phase1_views):
        augmenter = TrainAugmenter(config.augmentation, seed=config.seed * 1000 + v)
        views.append(extract(runner, AffectDataset(data, data.positions("train"), augmenter), batch, workers,
                             f"Phase-1 features (view {v + 1}/{config.phase1_views})", progress))
    val = extract(runner, AffectDataset(data, data.positions("val")), batch, workers, "Phase-1 features (val)",
                  progress)
    train = np.stack(views)
    for path, array in ((train_file, train), (val_file, val)):
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, path)
    return train, val


class FeatureViews(Dataset):
    """Training features: each item is one randomly chosen stored view of an image (clean or augmented)."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, va: np.ndarray):
        self.features, self.labels, self.va = features, labels, va

    def __len__(self) -> int:
        return self.features.shape[1]

    def __getitem__(self, i: int):
        view = int(torch.randint(self.features.shape[0], ()))
        return torch.from_numpy(np.array(self.features[view, i])), torch.tensor(self.labels[i]), torch.from_numpy(self.va[i])


class FixedFeatures(Dataset):
    def __init__(self, features: np.ndarray, labels: np.ndarray, va: np.ndarray):
        self.features, self.labels, self.va = features, labels, va

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int):
        return torch.from_numpy(np.array(self.features[i])), torch.tensor(self.labels[i]), torch.from_numpy(self.va[i])


def feature_loaders(datamodule: AffectDataModule, train: np.ndarray, val: np.ndarray) -> tuple[DataLoader, DataLoader]:
    data, config = datamodule.data, datamodule.config
    tr, va = data.positions("train"), data.positions("val")
    train_set = FeatureViews(train, data.expression[tr], data.valence_arousal[tr])
    val_set = FixedFeatures(val, data.expression[va], data.valence_arousal[va])
    sampler = datamodule._balanced_sampler(AffectDataset(data, tr)) if config.weighted_sampler else None
    # The head is tiny: worker processes would cost more than they save.
    return (DataLoader(train_set, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler),
            DataLoader(val_set, batch_size=config.batch_size))


__all__ = ["compute_phase1_features", "feature_loaders", "TrainAugmenter"]
