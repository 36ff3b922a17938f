"""Export a saved model to ONNX (dynamic batch), optionally int8-quantised, and check the export against PyTorch.

The TorchScript exporter (``dynamo=False``) is used on purpose: with the pinned torch 2.14 / onnxscript 0.5.6 pair
the dynamo exporter fails (``onnxscript._framework_apis.torch_2_11`` is missing) and it also refuses opset < 18.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from affectkit.atomic import atomic_path
from affectkit.errors import AffectkitError
from affectkit.inference.backends import (
    INPUT_NAME,
    MODEL_DESCRIPTION_KEY,
    OUTPUT_NAMES,
    WEIGHTS_DIGEST_KEY,
    OnnxBackend,
    weights_digest,
)
from affectkit.models.io import load_model
from affectkit.models.metadata import model_paths

# Dynamic quantisation targets the dense layers: onnxruntime's CPU kernel for ConvInteger lacks int8 weights, and
# where it does run (uint8 weights) it measured slower than the float convolution. Convolutions stay float32.
INT8_OP_TYPES = ["MatMul", "Gemm"]
DEFAULT_OPSET = 17


def int8_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".int8.onnx")


def _onnx_metadata(meta: dict, weights: Path) -> dict[str, str]:
    """Enough for an ONNX file to describe its own input and output to any reader, and the whole model description
    (``MODEL_DESCRIPTION_KEY``: the .json as it was at export) so that the file alone can be predicted with and
    served. Where the .json sits beside the export it stays the source of truth (calibration can change its
    temperature later)."""
    keys = ("display_name", "class_names", "input_size", "color", "normalization")
    described = {f"affectkit_{k}": json.dumps(meta[k]) for k in keys if k in meta}
    return {**described, WEIGHTS_DIGEST_KEY: weights_digest(weights), MODEL_DESCRIPTION_KEY: json.dumps(meta)}


def _export_fp32(model: torch.nn.Module, size: int, out: Path, opset: int, metadata: dict[str, str]) -> None:
    import onnx

    dummy = torch.zeros(2, 3, size, size)  # batch 2: keeps the exporter from specialising on a batch of one
    batch_axis = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            # The legacy exporter is deprecated but is the one that works with the pinned versions (module docstring).
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            try:
                torch.onnx.export(model, (dummy,), str(tmp), input_names=[INPUT_NAME],
                                  output_names=list(OUTPUT_NAMES), dynamic_axes=batch_axis, opset_version=opset,
                                  do_constant_folding=True, dynamo=False)
            except (RuntimeError, torch.onnx.OnnxExporterError) as exc:  # an opset too old or too new for it
                raise AffectkitError(f"Exporting this model to ONNX opset {opset} failed ({exc}); the default, "
                                     f"opset {DEFAULT_OPSET}, exports every affectkit model.") from None
        proto = onnx.load(str(tmp))
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))


def _quantize(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quant_logger = logging.getLogger()  # onnxruntime advises "pre-processing" on the root logger for every call
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        with atomic_path(out) as tmp:
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=INT8_OP_TYPES)
    finally:
        quant_logger.setLevel(level)


def export_onnx(model_path: str | Path, out: str | Path | None = None, int8: bool = False,
                opset: int = DEFAULT_OPSET) -> Path:
    """Write ``<stem>.onnx`` (or ``out``) and, with ``int8``, ``<stem>.int8.onnx``; returns the float32 file."""
    weights, _ = model_paths(model_path)
    model, meta = load_model(weights)
    out = Path(out) if out is not None else weights.with_suffix(".onnx")
    if out.suffix != ".onnx":
        raise AffectkitError(f"Export target {out} must end in .onnx.")
    out.parent.mkdir(parents=True, exist_ok=True)
    _export_fp32(model.float().eval(), int(meta["input_size"]), out, opset, _onnx_metadata(meta, weights))
    if int8:
        _quantize(out, int8_path(out))
    return out


def random_inputs(n: int, meta: dict, seed: int = 0) -> np.ndarray:
    """Uniform images normalised like the model's inputs: the value range real inputs have."""
    rng = np.random.default_rng(seed)
    size = int(meta["input_size"])
    mean, std = (np.asarray(meta["normalization"][k], dtype=np.float32)[:, None, None] for k in ("mean", "std"))
    return ((rng.random((n, 3, size, size), dtype=np.float32) - mean) / std).astype(np.float32)


def onnx_parity(model_path: str | Path, onnx_path: str | Path, n: int = 8) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime over all three outputs on ``n`` images."""
    model, meta = load_model(model_paths(model_path)[0])
    batch = random_inputs(n, meta)
    with torch.inference_mode():
        expected = [o.numpy() for o in model(torch.from_numpy(batch))]
    actual = OnnxBackend(Path(onnx_path))(batch)
    return float(max(np.abs(a - e).max() for a, e in zip(actual, expected)))
