"""Callbacks: keep the best model across both phases, record the per-epoch history, report a summary per epoch."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import lightning as L
import pandas as pd

from affectkit.atomic import atomic_path
from affectkit.config import Config
from affectkit.models.io import save_model
from affectkit.models.metadata import model_paths
from affectkit.progress import reporter

HISTORY_COLUMNS = [
    "epoch", "phase", "lr", "train_loss", "val_loss", "train_acc", "val_acc", "val_macro_f1",
    "train_valence_mae", "val_valence_mae", "train_arousal_mae", "val_arousal_mae", "time_s",
]


def _metric(trainer: L.Trainer, key: str) -> float:
    value = trainer.callback_metrics.get(key)
    return float(value) if value is not None else math.nan


def best_so_far(best_stem: Path, monitor: str, mode: str) -> float:
    """The selection metric recorded with a saved best model, or the worst value when there is none yet."""
    worst = math.inf if mode == "min" else -math.inf
    _, meta = model_paths(best_stem)
    if not meta.is_file():
        return worst
    return float(json.loads(meta.read_text()).get("best", {}).get(monitor, worst))


def epoch_summary(row: dict[str, float]) -> str:
    """One epoch's history row as the progress line shows it: accuracy and valence/arousal errors only where the
    data has them (a set without valence/arousal, such as FER2013, would show NaN every epoch)."""
    parts = [f"loss {row['train_loss']:.3f}/{row['val_loss']:.3f}"]
    if math.isfinite(row["val_acc"]):
        parts.append(f"acc {row['train_acc']:.3f}/{row['val_acc']:.3f}")
    if math.isfinite(row["val_valence_mae"]) or math.isfinite(row["val_arousal_mae"]):
        parts.append(f"val MAE v {row['val_valence_mae']:.3f} a {row['val_arousal_mae']:.3f}")
    return "  ".join([*parts, f"lr {row['lr']:.1e}", f"{row['time_s']:.1f}s"])


class KeepBest(L.Callback):
    """Write ``best_<Model>`` whenever the selection metric (``config.selection_metric``, validation data only)
    beats every earlier epoch of either phase."""

    def __init__(self, best_stem: Path, config: Config, phase: int, epoch_offset: int):
        self.best_stem = best_stem
        self.config = config
        self.phase = phase
        self.epoch_offset = epoch_offset
        self.monitor = config.selection_metric
        self.mode = "min" if self.monitor == "val_loss" else "max"
        self.best = best_so_far(best_stem, self.monitor, self.mode)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = _metric(trainer, self.monitor)
        if not (value < self.best if self.mode == "min" else value > self.best):
            return
        self.best = value
        if trainer.is_global_zero:
            best = {
                "epoch": self.epoch_offset + trainer.current_epoch + 1,
                "phase": self.phase,
                "selected_by": self.monitor,
                **{k: _metric(trainer, k) for k in ("val_loss", "val_acc", "val_macro_f1", "val_valence_mae",
                                                    "val_arousal_mae")},
            }
            save_model(pl_module.evaluated_model, self.best_stem, self.config, extra={"best": best})


class History(L.Callback):
    """Append one row per finished epoch to ``<Model>_history.csv`` (rewritten whole, so a resume stays consistent)."""

    def __init__(self, path: Path, name: str, phase: int, epoch_offset: int, max_epochs: int):
        self.path = path
        self.name = name
        self.phase = phase
        self.epoch_offset = epoch_offset
        self.max_epochs = max_epochs
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = self.epoch_offset + trainer.current_epoch + 1
        row = {"epoch": epoch, "phase": self.phase, "lr": trainer.optimizers[0].param_groups[0]["lr"]}
        row.update({c: _metric(trainer, c) for c in HISTORY_COLUMNS[3:-1]})
        row["time_s"] = round(time.perf_counter() - self._start, 2)
        if trainer.is_global_zero:
            old = pd.read_csv(self.path) if self.path.is_file() else pd.DataFrame(columns=HISTORY_COLUMNS)
            old = old[old["epoch"] < epoch]  # a resumed epoch replaces what a killed run left
            table = pd.concat([old, pd.DataFrame([row])], ignore_index=True) if len(old) else pd.DataFrame([row])
            with atomic_path(self.path) as tmp:
                table[HISTORY_COLUMNS].to_csv(tmp, index=False)
        if trainer.is_global_zero:
            reporter().show(f"{self.name} phase {self.phase} epoch {trainer.current_epoch + 1}/{self.max_epochs}: "
                            + epoch_summary(row))
