"""The LightningModule: one model, its multi-task loss, its optimiser and LR schedule, and per-epoch metrics."""

from __future__ import annotations

import hashlib

import lightning as L
import numpy as np
import torch
from timm.utils import ModelEmaV3
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.classification import MulticlassConfusionMatrix

from affectkit.config import NO_EXPRESSION, NUM_CLASSES, Config
from affectkit.data.augment import warp_images
from affectkit.data.datamodule import normalise_batch
from affectkit.errors import AffectkitError
from affectkit.models.factory import AffectModel
from affectkit.training.losses import annotated, multitask_loss, trained_columns
from affectkit.training.mixing import mix_batch, mixes


def _masked_absolute_error(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed absolute error over the annotated samples, their count), both tensors on the batch's device."""
    target, mask = annotated(pred, target)
    return (pred - target).abs().sum(), mask.sum()


class EpochMean(Metric):
    """A weighted mean over an epoch's batches that never waits for the device. torchmetrics' MeanMetric checks each
    update for NaN, a host sync per call (four per training step), which on a GPU stops the CPU from queueing the
    next step's work ahead. A NaN here (a diverged loss) simply stays NaN in the epoch's mean. The sums are
    float64: an epoch of AffectNet is hundreds of thousands of images. Synced across DDP processes."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("weight", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, total: torch.Tensor, weight: torch.Tensor | int) -> None:
        self.total += total.double()
        self.weight += weight

    def compute(self) -> torch.Tensor:
        return (self.total / self.weight).float()


class EpochOutputs(Metric):
    """An epoch's outputs and targets, kept on the device and concatenated (gathered across DDP processes) when
    read: the validation loss is the loss of the whole split at once. The batch-size-weighted mean of per-batch losses
    is not, where faces are partly annotated (each batch's mean has its own denominator), classes are weighted, or
    valence/arousal are scored by CCC (a batch's CCC is no share of the split's)."""

    full_state_update = False
    FIELDS = ("logits", "valence", "arousal", "target", "va")

    def __init__(self) -> None:
        super().__init__()
        for name in self.FIELDS:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, *values: torch.Tensor) -> None:
        for name, value in zip(self.FIELDS, values, strict=True):
            getattr(self, name).append(value.detach())

    def compute(self) -> dict[str, torch.Tensor]:
        return {name: dim_zero_cat(getattr(self, name)) for name in self.FIELDS}


def selection_mode(config: Config) -> str:
    """Whether the selection metric improves downwards (a loss) or upwards (a score)."""
    return "min" if config.selection_metric == "val_loss" else "max"


def macro_f1(confusion: torch.Tensor) -> torch.Tensor:
    """Mean F1 over the classes the targets contain (a class absent from the data would count as a zero)."""
    confusion = confusion.float()
    true_positive = confusion.diag()
    support, predicted = confusion.sum(1), confusion.sum(0)
    f1 = 2 * true_positive / (support + predicted).clamp(min=1)
    present = support > 0
    return f1[present].mean() if present.any() else confusion.new_zeros(())


class AffectModule(L.LightningModule):
    def __init__(self, model: AffectModel, config: Config, learning_rate: float,
                 class_weights: torch.Tensor | None = None, warmup_epochs: float = 0.0,
                 backbone_lr_scale: float = 1.0, ema_decay: float = 0.0):
        super().__init__()
        self.model = model
        # timm's decay warm-up (1 - (1 + step) ** -2/3, capped at ema_decay) keeps a run of a thousand steps from
        # averaging in its first, worst weights; a submodule, so checkpoints carry it and a resume goes on with it.
        self.ema = ModelEmaV3(model, decay=ema_decay, use_warmup=True) if ema_decay > 0 else None
        if self.ema is not None:  # no gradient reaches it (DDP would wait for one)
            self.ema.requires_grad_(False)
        self.config = config
        self.learning_rate = learning_rate
        self.warmup_epochs = warmup_epochs
        self.backbone_lr_scale = backbone_lr_scale
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(8), persistent=False)
        self.register_buffer("trained_classes", trained_columns(model.output_classes), persistent=False)
        self._mix_rng = np.random.default_rng(config.seed)
        self._backbone_digest: str | None = None
        self._epoch_means: dict[str, dict[str, EpochMean]] = {}
        # validate_args off: its checks of each batch's values are host syncs
        # One more row for the faces without a class, cut off when read: its ignore_index would select the others
        # by boolean indexing, a host sync per batch.
        self.val_confusion = MulticlassConfusionMatrix(NUM_CLASSES + 1, validate_args=False)
        self.val_outputs = EpochOutputs()

    def forward(self, images: torch.Tensor):
        return self.model(images)

    @property
    def evaluated_model(self) -> AffectModel:
        """The weights validation scores and the best model keeps: the moving average where there is one."""
        return self.ema.module if self.ema is not None else self.model

    def _network(self, stage: str) -> AffectModel:
        return self.model if stage == "train" else self.evaluated_model

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Training batches whose flip and warp were only drawn (``augment_on_device``) are warped here, on the GPU,
        in one batched operation."""
        if isinstance(batch, (list, tuple)) and len(batch) == 5:
            images, labels, va, landmarks, matrices = batch
            batch = (warp_images(images, matrices, self.config.augmentation.fill_mode), labels, va, landmarks)
        return batch

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        return normalise_batch(images, self.config.channels_last)

    def _outputs(self, batch, stage: str):
        """(logits, valence, arousal, expression target, labels, valence/arousal target) for one batch."""
        images, labels, va, _ = batch
        images, target, va = self._mixed(self._prepare(images), labels, va, stage)
        logits, valence, arousal = self._network(stage)(images)
        return logits, valence, arousal, target, labels, va

    def _mixed(self, inputs: torch.Tensor, labels: torch.Tensor, va: torch.Tensor, stage: str):
        """(inputs, expression target, valence/arousal): mixed in training where MixUp/CutMix is on, else as given."""
        if stage == "train" and mixes(self.config.augmentation):
            return mix_batch(inputs, labels, va, self.config.augmentation, self._mix_rng)
        return inputs, labels, va

    def _loss(self, logits, valence, arousal, target, va) -> torch.Tensor:
        return multitask_loss(logits, valence, arousal, target, va, self.config.loss, self.class_weights,
                              classes=self.trained_classes)[0]

    def _step(self, batch, stage: str) -> torch.Tensor | None:
        """A training step's loss; a validation step keeps its outputs for the epoch's loss and returns None."""
        logits, valence, arousal, target, labels, va = self._outputs(batch, stage)
        logits, valence, arousal = logits.float(), valence.float(), arousal.float()
        loss = self._loss(logits, valence, arousal, target, va) if stage == "train" else None
        if stage == "val":
            self.val_outputs.update(logits, valence, arousal, target, va)
        if labels.is_floating_point():  # vote distributions (label_distribution): scored by their most voted class
            labels = torch.where(labels.sum(1) > 0, labels.argmax(1), NO_EXPRESSION)
        self._accumulate(stage, loss, logits, valence, arousal, labels, va)
        if stage == "val":
            rows = torch.where(labels == NO_EXPRESSION, NUM_CLASSES, labels)  # no class: the extra row
            self.val_confusion.update(logits.detach().argmax(1), rows)
        return loss

    # Epoch means are accumulated here and logged once per epoch: a `self.log` call costs about a millisecond of
    # Lightning bookkeeping, as much as a whole head step on stored features.
    _METRICS = ("loss", "acc", "valence_mae", "arousal_mae")

    def _means(self, stage: str) -> dict[str, EpochMean]:
        if stage not in self._epoch_means:
            self._epoch_means[stage] = {name: EpochMean().to(self.device) for name in self._METRICS}
        return self._epoch_means[stage]

    def _accumulate(self, stage, loss, logits, valence, arousal, labels, va) -> None:
        """``loss``: the step's, averaged over the epoch's steps (training); None where the epoch's loss is computed
        from its outputs (validation)."""
        means = self._means(stage)
        if loss is not None:
            n = len(labels)
            means["loss"].update(loss.detach() * n, n)
        means["acc"].update((logits.detach().argmax(1) == labels).sum(), (labels != NO_EXPRESSION).sum())
        for name, pred, col in (("valence", valence, 0), ("arousal", arousal, 1)):
            means[f"{name}_mae"].update(*_masked_absolute_error(pred.detach().float(), va[:, col]))

    def _log_epoch(self, stage: str) -> None:
        for name, metric in self._means(stage).items():
            if metric.update_called:
                value = metric.compute()  # every process computes (a collective under DDP)
                # An error no annotated image had (a set without valence/arousal) is not logged; the loss is, NaN too.
                if name in ("loss", "acc") or bool(metric.weight > 0):
                    self.log(f"{stage}_{name}", value, prog_bar=name in ("loss", "acc"))
            metric.reset()

    def training_step(self, batch, batch_idx):
        loss = self._step(batch, "train")
        if self.trainer.is_last_batch:  # before the callbacks' epoch-end hooks, which record these
            self._log_epoch("train")
        return loss

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if self.val_outputs.update_called:
            self.log("val_loss", self._loss(**self.val_outputs.compute()), prog_bar=True)
            self.val_outputs.reset()
        self._log_epoch("val")
        self.log("val_macro_f1", macro_f1(self.val_confusion.compute()[:NUM_CLASSES, :NUM_CLASSES]))
        self.val_confusion.reset()

    # A frozen backbone is the same in every checkpoint of its phase: it is left out (a ResNet50 phase-1 checkpoint
    # shrinks from ~100 MB to 14 MB, which matters when epochs take a second) and restored from the resumed run's own
    # starting weights, after checking by digest that they are the ones the interrupted run started from.
    _FROZEN_KEY = "affectkit_frozen_backbone_sha256"

    def _backbone_is_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.model.backbone.parameters())

    def _backbone_sha256(self) -> str:
        if self._backbone_digest is None:  # frozen for the module's whole phase, so hashed once
            digest = hashlib.sha256()
            for key, tensor in sorted(self.model.backbone.state_dict().items()):
                digest.update(key.encode())
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            self._backbone_digest = digest.hexdigest()
        return self._backbone_digest

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if not self._backbone_is_frozen():
            return
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("model.backbone.")]:
            del state[key]
        checkpoint[self._FROZEN_KEY] = self._backbone_sha256()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        expected = checkpoint.get(self._FROZEN_KEY)
        if expected is None:
            return
        if self._backbone_sha256() != expected:
            raise AffectkitError(
                "This checkpoint's phase trained on other backbone weights than this run starts from: resume with "
                "the same --weights/--pretrained (and seed) as the interrupted run.")
        checkpoint["state_dict"].update(
            {k: v for k, v in self.state_dict().items() if k.startswith("model.backbone.")})

    def _parameter_groups(self) -> list[dict]:
        """Trainable parameters (phase 1: the head only), the backbone's at ``backbone_lr_scale`` of the rate."""
        head = [p for p in self.model.head.parameters() if p.requires_grad]
        backbone = [p for p in self.model.backbone.parameters() if p.requires_grad]
        # Named groups: the learning-rate curves in TensorBoard are then "lr-AdamW/head" and "lr-AdamW/backbone".
        groups = [{"params": head, "lr": self.learning_rate, "name": "head"}]
        if backbone:
            groups.append({"params": backbone, "lr": self.learning_rate * self.backbone_lr_scale, "name": "backbone"})
        return groups

    def configure_optimizers(self):
        groups = self._parameter_groups()
        # The fused kernel: one pass over all parameters, which shortens the cheap stored-features head steps most.
        optimizer_class = torch.optim.AdamW if self.config.optimizer == "adamw" else torch.optim.Adam
        optimizer = optimizer_class(groups, lr=self.learning_rate, weight_decay=self.config.weight_decay,
                                    fused=groups[0]["params"][0].device.type in ("cpu", "cuda"))
        total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup_steps = min(int(round(self.warmup_epochs * total_steps / max(self.trainer.max_epochs, 1))),
                           total_steps - 1)
        schedulers = []
        if warmup_steps > 0:
            schedulers.append({"scheduler": torch.optim.lr_scheduler.LinearLR(
                optimizer, start_factor=1.0 / warmup_steps, total_iters=warmup_steps), "interval": "step"})
        if self.config.lr_schedule == "cosine":
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(total_steps - warmup_steps, 1), eta_min=self.config.min_lr)
            if warmup_steps > 0:  # cosine starts where the warm-up ends
                schedulers = [{"scheduler": torch.optim.lr_scheduler.SequentialLR(
                    optimizer, [schedulers[0]["scheduler"], cosine], milestones=[warmup_steps]), "interval": "step"}]
            else:
                schedulers.append({"scheduler": cosine, "interval": "step"})
        else:
            schedulers.append({"scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=selection_mode(self.config), factor=self.config.lr_reduce_factor, patience=self.config.lr_reduce_patience,
                min_lr=self.config.min_lr), "monitor": self.config.selection_metric})
        return [optimizer], schedulers


class FeatureHeadModule(AffectModule):
    """Phase 1 on stored backbone features: with the backbone frozen its output depends on the input alone, so each
    step runs only the head. ``self.model`` is still the whole model, so checkpoints and best models are complete."""

    def _outputs(self, batch, stage: str):
        features, labels, va = batch
        # .float(): its Trainer runs fp32 (see _make_trainer)
        features, target, va = self._mixed(features.float(), labels, va, stage)
        logits, valence, arousal = self._network(stage).outputs_from_features(features)
        return logits, valence, arousal, target, labels, va
