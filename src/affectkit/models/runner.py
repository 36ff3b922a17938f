"""Forward passes of a frozen backbone in the fastest runtime at hand: phase 1's stored features and the
benchmark's linear probes run their images through it once."""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from affectkit.models.factory import AffectModel
from affectkit.models.metadata import DEFAULT_OPSET

Runner = Callable[[torch.Tensor], np.ndarray]


def fold_batchnorm(backbone: torch.nn.Module) -> torch.nn.Module:
    """A copy of a frozen (eval-mode) backbone with each BatchNorm folded into the convolution before it: the same
    function up to float rounding, with one operation fewer per convolution. The original when FX cannot trace it."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(copy.deepcopy(backbone).eval()).to(memory_format=torch.channels_last)
    except Exception:  # torch.fx cannot trace every architecture
        return backbone


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
                              dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
                              opset_version=DEFAULT_OPSET,
                              dynamo=False)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception:  # an architecture the exporter cannot handle: PyTorch does the work instead
            return None
    return lambda x: session.run(None, {"image": x.numpy()})[0]


def make_runner(model: AffectModel, img_size: int, bf16: bool = False,
                device: torch.device | str | None = None) -> Runner:
    """The fastest way (bench/train_speed.py, bench/gpu_check.py): on a GPU (``device``), PyTorch there, under bf16
    autocast where the run trains in bf16; on a CPU, PyTorch under bf16 autocast, BatchNorm folded, where the run
    trains in bf16 (the features then match what the naive way computes up to bf16 rounding; on a CPU with native
    bf16 it beats fp32 onnxruntime), else onnxruntime (faster than PyTorch eager in fp32), else PyTorch. The model
    itself stays where it is (``device`` None: runs there) and is not modified."""
    backbone = model.backbone.eval()
    where = next(backbone.parameters()).device
    device = torch.device(device) if device is not None else where
    if device.type == "cpu" and where.type == "cpu" and not bf16:
        runner = onnx_runner(backbone, img_size)
        if runner is not None:
            return runner
    folded = fold_batchnorm(backbone)
    if folded is backbone and device != where:
        folded = copy.deepcopy(backbone)
    return torch_runner(folded.to(device), bf16=bf16)
