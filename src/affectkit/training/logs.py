"""Experiment logs: TensorBoard event files under ``RUN/logs/<Model>/phase<N>/`` (``tensorboard --logdir RUN/logs``).

Each phase is one TensorBoard run holding the module's per-epoch means (``train_loss``, ``val_acc``, ...), the
learning rate of every parameter group per epoch, and the hyperparameters with the phase's best validation score
(the HPARAMS tab). ``<Model>_history.csv`` stays the record the report is built from; these logs are for watching
and comparing runs.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from affectkit.config import Config, dotted_items
from affectkit.runs import RunFolder

Scalar = bool | int | float | str


def flat_hparams(config: Config, **extra: Any) -> dict[str, Scalar]:
    """The config as one level of dotted keys (``loss.focal_gamma``) plus ``extra``: TensorBoard's hparams take
    neither nesting nor None, so None becomes the string "null"."""
    flat = dotted_items({**config.model_dump(mode="json"), **extra})
    return {key: "null" if value is None else value for key, value in flat.items()}


class _Hyperparameters(L.Callback):
    """The hyperparameters: into ``hparams.yaml`` at the start (Lightning writes that file once, right after
    ``on_fit_start``), and into the HPARAMS tab at the end with the early-stopping callback's best score, which
    survives a resume (it is in the checkpoint), unlike a best value tracked here."""

    def __init__(self, params: dict[str, Scalar]):
        self.params = params

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.logger.log_hyperparams(self.params)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # before the logger closes
        stopper = trainer.early_stopping_callback
        best = float(stopper.best_score) if stopper is not None else math.nan
        metrics = {f"hp/best_{stopper.monitor}": best} if math.isfinite(best) else None
        trainer.logger.log_hyperparams(self.params, metrics=metrics)


@rank_zero_only
def _clear(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def tensorboard_logging(run_dir: Path, name: str, phase: int, params: dict[str, Scalar],
                        resume: bool) -> tuple[TensorBoardLogger, list[L.Callback]]:
    """The logger for one phase and the callbacks that feed it. A phase started afresh replaces its old logs, as
    the trainer replaces the old history and checkpoints; a resumed one appends to them. Only rank 0 writes."""
    logger = TensorBoardLogger(save_dir=RunFolder(run_dir).logs, name=name, version=f"phase{phase}",
                               default_hp_metric=False)
    if not resume:
        _clear(Path(logger.log_dir))
    return logger, [LearningRateMonitor(logging_interval="epoch"), _Hyperparameters(params)]
