"""The learned temporal model: a bidirectional GRU over a clip's frames (what the face model said of each) and an
attention pooling that learns which frames carry the expression, with heads for the expression and for valence and
arousal. Trained with Lightning on the train clips; the epoch kept and the size are chosen by validation loss."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.data import DataLoader, TensorDataset

from affectkit.config import CLASS_NAMES
from affectkit.progress import lightning_quieted

HIDDEN_SIZES = (32, 64)
MAX_EPOCHS = 300
PATIENCE = 30
BATCH_SIZE = 32


class SequenceNet(nn.Module):
    def __init__(self, n_features: int, hidden: int = 64, dropout: float = 0.3, n_classes: int = len(CLASS_NAMES)):
        super().__init__()
        # Standardisation of the frame inputs, set from the train clips' frames and saved with the weights.
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.gru = nn.GRU(n_features, hidden, batch_first=True, bidirectional=True)
        self.attention = nn.Linear(2 * hidden, 1)
        self.dropout = nn.Dropout(dropout)
        self.expression = nn.Linear(2 * hidden, n_classes)
        self.dimensions = nn.Linear(2 * hidden, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([N, classes] expression logits, [N, 2] valence and arousal) of [N, T, F] padded clips."""
        x = (x - self.mean) / self.std
        # Packing keeps the backward direction from reading the padding first.
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=x.shape[1])
        frames = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]
        weights = self.attention(states).squeeze(-1).masked_fill(~frames, -math.inf).softmax(dim=1)
        pooled = self.dropout((weights.unsqueeze(-1) * states).sum(dim=1))
        return self.expression(pooled), torch.tanh(self.dimensions(pooled))


def set_standardisation(net: nn.Module, frames: np.ndarray) -> None:
    """A sequence network's input standardisation (its ``mean`` and ``std`` buffers) from the train frames [N, F]."""
    net.mean.copy_(torch.from_numpy(frames.mean(axis=0)))
    net.std.copy_(torch.from_numpy(np.maximum(frames.std(axis=0), 1e-3)))


def _tensors(inputs: np.ndarray, lengths: np.ndarray, expression: np.ndarray,
             valence_arousal: np.ndarray) -> TensorDataset:
    """``expression``: class ids, -1 where unlabelled; ``valence_arousal``: [N, 2], NaN where unlabelled."""
    return TensorDataset(torch.from_numpy(inputs), torch.from_numpy(lengths),
                         torch.from_numpy(expression.astype(np.int64)),
                         torch.from_numpy(valence_arousal.astype(np.float32)))


class SequenceModule(L.LightningModule):
    """The GRU and its loss: cross-entropy on the clips with an expression, squared error on those with valence and
    arousal (either may be absent)."""

    def __init__(self, net: SequenceNet, learning_rate: float = 3e-3, weight_decay: float = 1e-2,
                 label_smoothing: float = 0.1):
        super().__init__()
        self.net = net
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing

    def _loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        x, lengths, expression, valence_arousal = batch
        logits, dimensions = self.net(x, lengths)
        loss = logits.new_zeros(())
        labelled = expression >= 0
        if labelled.any():
            loss = loss + F.cross_entropy(logits[labelled], expression[labelled], label_smoothing=self.label_smoothing)
        rated = torch.isfinite(valence_arousal)
        if rated.any():
            loss = loss + F.mse_loss(dimensions[rated], valence_arousal[rated])
        return loss

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, on_epoch=True, on_step=False, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch), on_epoch=True, batch_size=len(batch[0]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)


class KeepBestWeights(L.Callback):
    """The weights of the epoch with the lowest validation loss, kept in memory (a fit takes seconds)."""

    def __init__(self):
        self.best = math.inf
        self.epoch = 0
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("val_loss")
        if trainer.sanity_checking or value is None or not float(value) < self.best:
            return
        self.best, self.epoch = float(value), trainer.current_epoch + 1
        self.state = copy.deepcopy(pl_module.net.state_dict())


@dataclass
class FittedSequenceNet:
    net: SequenceNet
    hidden: int
    val_loss: float
    epoch: int  # the epoch kept


def fit_keeping_best(module: L.LightningModule, train: DataLoader, val: DataLoader, max_epochs: int = MAX_EPOCHS,
                     patience: int = PATIENCE) -> KeepBestWeights:
    """Fit ``module`` (a sequence network ``module.net`` and its loss, logged as ``val_loss``) with early stopping;
    ``module.net`` is left with the weights of its epoch with the lowest validation loss."""
    keep = KeepBestWeights()
    # The network is tiny and its inputs are a few numbers a frame: the CPU fits it faster than a GPU would start.
    with lightning_quieted():
        trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, callbacks=[EarlyStopping("val_loss", patience=patience), keep])
        trainer.fit(module, train, val)
    if keep.state is None:
        raise ValueError("the temporal model's validation loss was never finite")
    module.net.load_state_dict(keep.state)
    return keep


def _fit_one(train: TensorDataset, val: TensorDataset, n_features: int, hidden: int, seed: int,
             frames: np.ndarray) -> FittedSequenceNet:
    L.seed_everything(seed, verbose=False)
    net = SequenceNet(n_features, hidden)
    set_standardisation(net, frames)
    generator = torch.Generator().manual_seed(seed)
    keep = fit_keeping_best(SequenceModule(net),
                            DataLoader(train, batch_size=BATCH_SIZE, shuffle=True, generator=generator),
                            DataLoader(val, batch_size=len(val)))
    return FittedSequenceNet(net.eval(), hidden, keep.best, keep.epoch)


def fit_sequence_model(train: tuple[np.ndarray, ...], val: tuple[np.ndarray, ...], seed: int = 0,
                       progress=None) -> FittedSequenceNet:
    """The GRU fit on ``train`` (inputs, lengths, expression ids with -1 for none, [N, 2] valence/arousal with NaN
    for none) for each of ``HIDDEN_SIZES``; the size and the epoch kept are the ones with the lowest loss on ``val``."""
    train_set, val_set = _tensors(*train), _tensors(*val)
    frames = np.concatenate([x[:n] for x, n in zip(train[0], train[1])])
    best = None
    for hidden in HIDDEN_SIZES:
        fitted = _fit_one(train_set, val_set, train[0].shape[2], hidden, seed, frames)
        if best is None or fitted.val_loss < best.val_loss:
            best = fitted
        if progress is not None:
            progress()
    return best


def predict_sequences(net: SequenceNet, inputs: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([N, classes] probabilities, [N, 2] valence and arousal)."""
    net.eval()
    probabilities, dimensions = [], []
    with torch.inference_mode():
        for start in range(0, len(inputs), 256):
            logits, va = net(torch.from_numpy(inputs[start:start + 256]), torch.from_numpy(lengths[start:start + 256]))
            probabilities.append(logits.softmax(dim=1).numpy())
            dimensions.append(va.numpy())
    return np.concatenate(probabilities), np.concatenate(dimensions)
