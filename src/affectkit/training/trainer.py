"""Two-phase training of one model, resumable at any epoch.

Phase 1 trains the head with the backbone frozen (weights and BatchNorm statistics) at ``learning_rate``; phase 2
unfreezes everything and fine-tunes at ``fine_tune_lr``, starting from phase 1's best weights. The custom CNN has no
pretrained part and trains in one phase. Each phase has its own early stopping and LR reduction on validation loss;
the best model over both phases is kept as ``best_<Model>.safetensors`` + ``.json``.

State on disk (``RUN/checkpoints/<Model>/``): ``phase<N>/last.ckpt`` (Lightning's full state: weights, optimiser,
scheduler, early-stopping counters, loop position; written atomically after every epoch), ``phase<N>.done`` and
``done`` markers. ``--resume`` continues from there; without it a model's old state is discarded.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar

from affectkit.config import NO_EXPRESSION, Config
from affectkit.data.datamodule import AffectDataModule, PreparedData
from affectkit.data.splits import random_subsample
from affectkit.errors import AffectkitError
from affectkit.evaluation.plots import plot_training_history
from affectkit.inference.faces import FaceDetector, training_margin
from affectkit.models.factory import (
    AffectModel,
    ModelSpec,
    build_model,
    count_parameters,
    resolve_spec,
    trainable_spec,
)
from affectkit.models.io import load_model
from affectkit.models.metadata import fusion_branches, fusion_criterion, model_paths, read_metadata, update_metadata
from affectkit.models.registry import is_pretrained
from affectkit.models.weights import load_pretrained_weights, load_weights_file
from affectkit.progress import lightning_quieted, reporter, silenced
from affectkit.runs import RunFolder
from affectkit.training.callbacks import History, KeepBest
from affectkit.training.fusion import assemble_fusion
from affectkit.training.hardware import resolve_accelerator
from affectkit.training.module import AffectModule, FeatureHeadModule, selection_mode


@dataclass(frozen=True)
class Phase:
    number: int
    epochs: int
    learning_rate: float
    freeze_backbone: bool
    patience: int  # early stopping: epochs without a better validation score
    freeze_batchnorm: bool = False  # fine-tuning a pretrained backbone keeps its BatchNorm statistics
    warmup_epochs: float = 0.0
    backbone_lr_scale: float = 1.0


@dataclass
class TrainResult:
    name: str  # display name
    best_path: Path
    history: pd.DataFrame
    train_time_s: float
    parameters: int
    branches: tuple[TrainResult, ...] = ()  # a fusion's: its branches, each a model of the run folder


# A step minimum lengthens phase 2 on a small set, but no further than this many times its epoch budget.
MAX_EPOCH_STRETCH = 3
FRAMING_SAMPLE = 48  # training faces a model's framing (the margin it is served at) is measured on


def phase2_epochs(config: Config, train_images: int) -> int:
    """Phase 2's epoch budget: ``fine_tune_epochs``, stretched to reach ``fine_tune_min_steps`` optimiser steps."""
    steps_per_epoch = max(1, math.ceil(train_images / config.batch_size))
    needed = math.ceil(config.fine_tune_min_steps / steps_per_epoch)
    return max(config.fine_tune_epochs, min(needed, MAX_EPOCH_STRETCH * config.fine_tune_epochs))


def phase2_patience(config: Config, epochs: int) -> int:
    """Early stopping's patience in a phase 2 of ``epochs``, stretched as far as the step minimum stretched its epochs.

    Its epochs are then shorter, and the validation score of a small set swings from one to the next as much as it
    climbs; an unstretched patience would stop the phase early in its schedule, before the learning rate has come
    down, and keep an epoch picked by that noise."""
    return math.ceil(config.early_stopping_patience * max(1.0, epochs / max(1, config.fine_tune_epochs)))


def plan_phases(model: AffectModel, config: Config, pretrained_backbone: bool, train_images: int) -> list[Phase]:
    patience = config.early_stopping_patience
    if not model.spec.two_phase:
        return [Phase(1, config.epochs, config.learning_rate, freeze_backbone=False, patience=patience)]
    batchnorm = config.fine_tune_batchnorm
    fine_tune_epochs = phase2_epochs(config, train_images)
    return [
        Phase(1, config.epochs, config.learning_rate, freeze_backbone=True, patience=patience),
        Phase(2, fine_tune_epochs, config.fine_tune_lr, freeze_backbone=False,
              freeze_batchnorm=batchnorm == "frozen" or (batchnorm == "auto" and pretrained_backbone),
              warmup_epochs=config.fine_tune_warmup_epochs, backbone_lr_scale=config.backbone_lr_scale,
              patience=phase2_patience(config, fine_tune_epochs)),
    ]


@dataclass(frozen=True)
class StartingWeights:
    kind: str  # "imagenet:<source>", "fer2013:registry", "file", "random" or "scratch": what the comparison shows
    detail: str  # one sentence for the report and the model's description

    @property
    def pretrained(self) -> bool:
        return is_pretrained(self.kind)


def initialise_weights(model: AffectModel, weights: Path | None, pretrained: bool) -> StartingWeights:
    """Load the starting weights and say where they came from."""
    if weights is not None:
        start = StartingWeights("file", load_weights_file(model, weights))
    elif model.spec.backbone == "custom_cnn":
        return StartingWeights("scratch", "custom CNN: trained from scratch")
    elif pretrained:
        start = StartingWeights(*load_pretrained_weights(model))
    else:
        start = StartingWeights("random", "backbone starts from RANDOM initialisation (no --weights/--pretrained): "
                                          "transfer learning is off")
    # A note, not progress: which weights a model started from is a result.
    reporter().note(f"{model.spec.display_name} ({model.backbone_name}): {start.detail}", style="yellow")
    return start


def class_weights(datamodule: AffectDataModule) -> torch.Tensor:
    """Inverse training-split frequency, normalised to mean 1 over the classes present."""
    counts = datamodule.class_frequencies()
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def hardware_options(config: Config, model: AffectModel, stored_features: bool = False) -> dict:
    """The Trainer's hardware settings for ``model``: accelerator, devices, precision and cuDNN's autotuner."""
    accelerator, precision = resolve_accelerator(config, model)
    if stored_features:  # the head trains in fp32 on them (FeatureHeadModule); a mixed-precision plugin only adds work
        precision = "32-true"
    # Every batch of a run has one image size, so cuDNN's per-shape search for the fastest convolution pays back
    # after the first steps; Lightning leaves it off unless asked.
    return {"accelerator": accelerator, "devices": config.devices, "num_nodes": config.num_nodes,
            "precision": precision, "benchmark": accelerator in ("gpu", "cuda")}


def _make_trainer(config: Config, model: AffectModel, phase: Phase, callbacks: list, stored_features: bool,
                  run_dir: Path, resume: bool) -> L.Trainer:
    progress = reporter().bars
    if progress:
        callbacks = [*callbacks, RichProgressBar(leave=False)]
    logger = False
    if config.tensorboard:
        from affectkit.training.logs import flat_hparams, tensorboard_logging

        params = flat_hparams(config, model=model.spec.key, backbone=model.backbone_name, phase=phase.number,
                              phase_learning_rate=phase.learning_rate, freeze_backbone=phase.freeze_backbone,
                              stored_features=stored_features)
        logger, log_callbacks = tensorboard_logging(run_dir, model.spec.display_name, phase.number, params, resume)
        callbacks = [*callbacks, *log_callbacks]
    return L.Trainer(
        max_epochs=phase.epochs,
        **hardware_options(config, model, stored_features),
        callbacks=callbacks,
        logger=logger,
        # The module logs its epoch means once, at the last training batch: any longer interval would drop them in
        # epochs whose batch count it does not divide.
        log_every_n_steps=1,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=False,
        use_distributed_sampler=True,
    )


def is_global_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def uses_feature_cache(phase: Phase, config: Config) -> bool:
    """Stored features stand in for the backbone where they are exact: a frozen backbone and one process. (MixUp and
    CutMix then mix the features: see :mod:`affectkit.training.mixing`.)"""
    single_process = config.devices in (1, "1") and config.num_nodes == 1
    return phase.freeze_backbone and config.phase1_feature_cache and single_process


def _run_phase(model: AffectModel, phase: Phase, datamodule: AffectDataModule, config: Config, run_dir: Path,
               state_dir: Path, epoch_offset: int, resume: bool, extra_callbacks: list) -> None:
    name, run = model.spec.display_name, RunFolder(run_dir)
    model.set_backbone_trainable(not phase.freeze_backbone, freeze_batchnorm=phase.freeze_batchnorm)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if config.compile:
        model.compile()  # in place, so state-dict keys, checkpoints and saved models stay as they are
    weights = class_weights(datamodule)
    if uses_feature_cache(phase, config):
        from affectkit.training.features import compute_phase1_features, feature_loaders

        module: AffectModule = FeatureHeadModule(model, config, phase.learning_rate, weights)
        train_loader, val_loader = feature_loaders(datamodule, *compute_phase1_features(model, datamodule, state_dir))
        loaders = {"train_dataloaders": train_loader, "val_dataloaders": val_loader}
    else:
        module = AffectModule(model, config, phase.learning_rate, weights, warmup_epochs=phase.warmup_epochs,
                              backbone_lr_scale=phase.backbone_lr_scale,
                              ema_decay=0.0 if phase.freeze_backbone else config.ema_decay)
        loaders = {"datamodule": datamodule}
    phase_dir = state_dir / f"phase{phase.number}"
    last = phase_dir / "last.ckpt"
    callbacks = [
        EarlyStopping(monitor=config.selection_metric, patience=phase.patience,
                      mode=selection_mode(config)),
        KeepBest(run.best(name), config, phase.number, epoch_offset),
        History(run.history(name), name, phase.number, epoch_offset, phase.epochs),
        # Saved at train-epoch end, after History has written its row (Lightning runs checkpointing last), so a kill
        # between the two only makes the resumed run redo one epoch and rewrite that row.
        ModelCheckpoint(dirpath=phase_dir, filename="last", save_last=False, save_top_k=1, monitor=None,
                        every_n_epochs=1, enable_version_counter=False, save_on_train_epoch_end=True),
        *extra_callbacks,
    ]
    with lightning_quieted():  # its banners (devices, precision, why fit stopped): the History lines say it all
        trainer = _make_trainer(config, model, phase, callbacks,
                                stored_features=isinstance(module, FeatureHeadModule), run_dir=run_dir,
                                resume=resume and last.is_file())
        _fit(trainer, module, loaders, last if resume and last.is_file() else None)
    (state_dir / f"phase{phase.number}.done").write_text(json.dumps({"epochs_run": trainer.current_epoch}))


def _fit(trainer: L.Trainer, module: L.LightningModule, loaders: dict, checkpoint: Path | None) -> None:
    with warnings.catch_warnings():
        # The module warps augment_on_device batches (AffectModule.on_after_batch_transfer); the DataModule has no
        # such hook, so there is nothing for Lightning's warning about the two to choose between.
        warnings.filterwarnings("ignore", message=r"You have overridden `on_after_batch_transfer`")
        trainer.fit(module, **loaders, ckpt_path=checkpoint)


def _epochs_done(history_path: Path, phase: int) -> int:
    if not history_path.is_file():
        return 0
    table = pd.read_csv(history_path)
    return int(table["epoch"][table["phase"] < phase].max()) if (table["phase"] < phase).any() else 0


def train_model(name: str, data: PreparedData, run_dir: Path, config: Config, weights: Path | None = None,
                pretrained: bool = False, resume: bool = False, quiet: bool = False,
                extra_callbacks: list | None = None, trained: Mapping[str, TrainResult] | None = None) -> TrainResult:
    """Train ``name`` on ``data`` into ``run_dir``; ``extra_callbacks`` (Lightning callbacks) join every phase. A
    fusion model's branches are trained one after the other, each as its own model in ``run_dir``, then put together
    (:func:`affectkit.training.fusion.assemble_fusion`). ``trained``: results (by display name) of models this run
    already trained into ``run_dir`` from the same start (``pretrained``, no weights file), fusions' branches
    included; a model among them (or a fusion's branch) is taken as it is instead of being trained again."""
    for key in config.model_settings:  # a misspelt model would otherwise keep its settings unused, silently
        try:
            resolve_spec(key, config.use_light_models)
        except AffectkitError as exc:
            raise AffectkitError(f"model_settings.{key}: {exc}") from None
    spec = trainable_spec(name, config.use_light_models)
    with silenced(quiet):
        result = _train_spec(spec, data, run_dir, config, weights, pretrained, resume, extra_callbacks or [],
                             trained or {})
    if result is None:
        # Under DDP every process trains; only rank 0 goes on to evaluate and report.
        sys.exit(0)
    _record_framing(result.best_path, data, config.seed)
    return result


def _record_framing(model_path: Path, data: PreparedData, seed: int) -> None:
    """Store with the model how its training faces frame their face (:func:`training_margin`, on a sample of
    them), the margin ``predict`` and ``serve`` crop detected faces at; once per saved model."""
    if "face_margin" in read_metadata(model_path):
        return
    train = data.positions("train")
    sample = train[random_subsample(len(train), FRAMING_SAMPLE, seed)]
    margin, measured = training_margin([data.images[i] for i in sample], FaceDetector())
    update_metadata(model_path, face_margin=margin, face_margin_faces=measured)


def branch_config(branch: ModelSpec, config: Config) -> Config:
    """``config`` for a fusion's branch trained as its own model: with its own ``model_settings``, and the light
    setting under which its key names it again (a light stand-in's key means the stand-in only when light), so its
    saved file reloads as what it is."""
    return config.for_model(branch.key).override(use_light_models=branch.stands_in_for is not None)


def _train_spec(spec: ModelSpec, data: PreparedData, run_dir: Path, config: Config, weights: Path | None,
                pretrained: bool, resume: bool, extra_callbacks: list,
                trained: Mapping[str, TrainResult]) -> TrainResult | None:
    if weights is None and spec.display_name in trained:
        return trained[spec.display_name]
    if spec.branches:
        return _train_fusion(spec, data, run_dir, config, weights, pretrained, resume, extra_callbacks, trained)
    return _train_model(spec, data, run_dir, config, weights, pretrained, resume, extra_callbacks)


def _train_fusion(spec: ModelSpec, data: PreparedData, run_dir: Path, config: Config, weights: Path | None,
                  pretrained: bool, resume: bool, extra_callbacks: list,
                  trained: Mapping[str, TrainResult]) -> TrainResult | None:
    if weights is not None:
        raise AffectkitError(f"{spec.display_name} has one backbone per branch, so one weights file ({weights}) "
                             "cannot start it: use --pretrained (each branch's shipped weights).")
    # Each branch is the model it is, with its own early stopping and checkpoint selection on val.
    results = [_train_spec(branch, data, run_dir, branch_config(branch, config), None, pretrained, resume,
                           extra_callbacks, trained) for branch in spec.branches]
    if None in results:
        return None
    stem = RunFolder(run_dir).best(spec.display_name)
    model, fit = assemble_fusion(spec.key, [r.best_path for r in results], data, config, stem)
    # Read as the saved description is read (card, benchmark): by log-loss, or valence/arousal MSE.
    fusion = {"branches": [r.name for r in results], **asdict(fit)}
    parts = fusion_branches(fusion)
    criterion, fused = fusion_criterion(fusion)
    weights = ", ".join(f"{name} {w:g}" for name, w, _, _ in parts)
    alone = " / ".join(f"{score:.3f}" for _, _, _, score in parts)
    reporter().note(f"{spec.display_name}: fusion weights {weights}, chosen on val by {criterion} ({fused:.3f}; "
                    f"the branches alone {alone})")
    history = pd.concat([r.history.assign(model=r.name) for r in results], ignore_index=True)
    return TrainResult(spec.display_name, model_paths(stem)[0], history, sum(r.train_time_s for r in results),
                       count_parameters(model), branches=tuple(results))


def _trained_class_frequencies(datamodule: AffectDataModule) -> np.ndarray:
    """The training split's class frequencies (all zero: a valence/arousal model), once validation is checked to be
    able to select the model by the configured metric."""
    data, config = datamodule.data, datamodule.config
    frequencies = datamodule.class_frequencies()
    val_classes = data.expression[data.positions("val")]
    if config.selection_metric == "val_macro_f1" and (not frequencies.any() or (
            len(val_classes) and (val_classes == NO_EXPRESSION).all())):
        raise AffectkitError("No training or no validation face has an expression class, so val_macro_f1 cannot "
                             "select the model: set selection_metric: val_loss.")
    return frequencies


def _train_model(spec: ModelSpec, data: PreparedData, run_dir: Path, config: Config, weights: Path | None,
                 pretrained: bool, resume: bool, extra_callbacks: list) -> TrainResult | None:
    """One model; None in a DDP process other than rank 0, once training is over."""
    name, display = spec.key, spec.display_name
    config = config.for_model(name)
    run = RunFolder(run_dir)
    state_dir = run.checkpoints(display)
    best_stem = run.best(display)
    history_path = run.history(display)
    timing_path = state_dir / "train_time.json"
    if resume and (state_dir / "done").is_file():
        reporter().note(f"{display}: already trained in {run_dir}; that model is used as it is.")
        model, meta = load_model(best_stem)
        return TrainResult(display, model_paths(best_stem)[0], pd.read_csv(history_path),
                           json.loads(timing_path.read_text())["seconds"], count_parameters(model))
    # Data the run cannot train on is refused before an earlier run's state is cleared.
    datamodule = AffectDataModule(data, config)
    frequencies = _trained_class_frequencies(datamodule)
    if not resume:
        shutil.rmtree(state_dir, ignore_errors=True)
        for stale in (*model_paths(best_stem), history_path):
            stale.unlink(missing_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)

    L.seed_everything(config.seed, workers=True, verbose=False)
    model = build_model(name, config)
    starting = initialise_weights(model, weights, pretrained or config.pretrained)
    model.set_output_classes(frequencies > 0)
    model.valence_arousal_trained.fill_(data.trains_valence_arousal)
    spent = json.loads(timing_path.read_text())["seconds"] if timing_path.is_file() else 0.0
    for phase in plan_phases(model, config, starting.pretrained, len(data.positions("train"))):
        if (state_dir / f"phase{phase.number}.done").is_file() or phase.epochs == 0:
            continue
        resuming_phase = resume and (state_dir / f"phase{phase.number}" / "last.ckpt").is_file()
        if phase.number > 1 and not resuming_phase and model_paths(best_stem)[0].is_file():
            # Fine-tuning starts from phase 1's best weights, not its last ones.
            best, _ = load_model(best_stem)
            model.load_state_dict(best.state_dict())
        start = time.perf_counter()
        _run_phase(model, phase, datamodule, config, run_dir, state_dir, _epochs_done(history_path, phase.number),
                   resuming_phase, extra_callbacks)
        spent += time.perf_counter() - start
        timing_path.write_text(json.dumps({"seconds": spent}))
    if not is_global_zero():
        return None
    if not model_paths(best_stem)[0].is_file():
        raise AffectkitError(f"{display}: no epoch finished, so there is no model to keep (epochs = 0?).")
    update_metadata(best_stem, initial_weights=starting.kind, initial_weights_detail=starting.detail,
                    stands_in_for=model.spec.stands_in_for)
    (state_dir / "done").write_text("ok")
    history = pd.read_csv(history_path)
    plot_training_history(history, run.training_plot(display), f"{display} training history")
    return TrainResult(display, model_paths(best_stem)[0], history, spent, count_parameters(model))
