"""Export a saved model to ONNX (dynamic batch), optionally int8-quantised, and to ONNX Runtime Mobile's format
(``.ort``, for phones and embedded boards), and check the export against PyTorch.

The TorchScript exporter (``dynamo=False``) is used on purpose: with the pinned torch 2.14 / onnxscript 0.5.6 pair
the dynamo exporter fails (``onnxscript._framework_apis.torch_2_11`` is missing) and it also refuses opset < 18.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from affectkit.atomic import atomic_path
from affectkit.errors import AffectkitError
from affectkit.inference.backends import (
    INPUT_NAME,
    MODEL_DESCRIPTION_KEY,
    OUTPUT_NAMES,
    QUANTIZATION_KEY,
    WEIGHTS_DIGEST_KEY,
    OnnxBackend,
    weights_digest,
)
from affectkit.inference.predictor import input_normalization, preprocess
from affectkit.models.io import load_model
from affectkit.models.metadata import DEFAULT_OPSET, model_paths

# Dynamic quantisation targets the dense layers: onnxruntime's CPU kernel for ConvInteger lacks int8 weights, and
# where it does run (uint8 weights) it measured slower than the float convolution. Convolutions stay float32 unless
# calibration faces are given: static quantisation runs them through QLinearConv, which is faster.
INT8_OP_TYPES = ["MatMul", "Gemm"]
CALIBRATION_BATCH = 16
X86_LAYOUT_TRANSFORMER = "NchwcTransformer"  # blocked channels for x86 SIMD: an .ort file made with it runs on x86 only


def int8_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".int8.onnx")


def ort_path(onnx_path: Path) -> Path:
    """``m.onnx`` -> ``m.ort``, ``m.int8.onnx`` -> ``m.int8.ort``."""
    return onnx_path.with_suffix(".ort")


def operators_path(onnx_path: Path) -> Path:
    """Where the operators of a model's ``.ort`` files are listed: ``m.required_operators.config``."""
    return onnx_path.with_suffix(".required_operators.config")


def convert_to_ort(onnx_path: Path) -> Path:
    """``onnx_path`` in ONNX Runtime's own format (``.ort`` beside it), the format ONNX Runtime Mobile (Android, iOS)
    and a reduced build of ONNX Runtime load: its graph optimised once here, so a device loads it without optimising
    it, and with no layout tied to this CPU (the x86-only NCHWc transformer is left out, as onnxruntime's
    ``convert_onnx_models_to_ort`` tool does for any other target), so it runs on ARM as on x86. The export's
    metadata, the model's description included, is kept: the ``.ort`` file alone predicts and serves."""
    import onnxruntime as ort

    out = ort_path(onnx_path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.save_model_format", "ORT")
    with atomic_path(out) as tmp:
        options.optimized_model_filepath = str(tmp)
        try:
            ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"],
                                 disabled_optimizers=[X86_LAYOUT_TRANSFORMER])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise AffectkitError(f"Converting {onnx_path} to ONNX Runtime's format failed ({exc}).") from None
    return out


def write_operators(models: Sequence[Path], out: Path) -> Path:
    """The operators ``models`` (``.ort`` files) use, as the config file ONNX Runtime's ``build.py
    --include_ops_by_config`` reads to build a runtime with those alone (a smaller app)."""
    from onnxruntime.tools.ort_format_model import create_config_from_models

    with atomic_path(out) as tmp:
        create_config_from_models([Path(m) for m in models], tmp, False)
    return out


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


def quantize_onnx(fp32: Path, out: Path, batches: Sequence[np.ndarray] | None = None, per_channel: bool = True,
                  reduce_range: bool = True) -> None:
    """Dynamic int8 of the dense layers; with ``batches`` (model inputs, :func:`model_inputs`), static int8 of the
    convolutions and dense layers, the activation ranges read from ``batches``, the weights per output channel (else
    per tensor) and in 7 bits (``reduce_range``, else 8): the settings :func:`export_onnx` takes are the defaults."""
    quant_logger = logging.getLogger()  # onnxruntime advises "pre-processing" on the root logger for every call
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        with atomic_path(out) as tmp:
            if batches is None:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=INT8_OP_TYPES)
            else:
                _quantize_static(fp32, tmp, batches, per_channel, reduce_range)
            _describe(tmp, quantization_description(None if batches is None else sum(len(b) for b in batches)))
    finally:
        quant_logger.setLevel(level)


def quantization_description(calibration_faces: int | None) -> str:
    """What an int8 export says it is: dynamic (no calibration faces), or static from so many faces."""
    if calibration_faces is None:
        return "dynamic int8: dense layers"
    return f"static int8: convolutions and dense layers, activation ranges from {calibration_faces} faces"


def _describe(path: Path, quantization: str) -> None:
    """The export says what it is, for whoever serves it: its description (and scores) are its float model's."""
    import onnx

    proto = onnx.load(str(path))
    proto.metadata_props.add(key=QUANTIZATION_KEY, value=quantization)
    onnx.save(proto, str(path))


def _quantize_static(fp32: Path, out: Path, batches: Sequence[np.ndarray], per_channel: bool,
                     reduce_range: bool) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([{INPUT_NAME: batch} for batch in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    prepared = out.with_name(out.name + ".prepared.onnx")
    try:
        # Shapes inferred and BatchNorm folded, as the quantiser wants; the symbolic shape inference is for
        # transformers and gives up on the recipe's fusion graph.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        # Weights per output channel, in 7 bits: a CPU without VNNI multiplies uint8 x int8 pairs into int16 with
        # saturation, which full 8-bit weights overflow (MobileNetV2 lost several points: static_int8.md in
        # bench/results); a CPU with VNNI gives up one bit of weight precision for a file that is right everywhere.
        with warnings.catch_warnings():
            # It computes a scale for every tensor it calibrated, those of the layers left in float too (a padding of
            # -inf: "invalid value encountered in cast"); the scales it writes are checked by the tests.
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="onnxruntime.quantization")
            quantize_static(str(prepared), str(out), Feeds(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            reduce_range=reduce_range, nodes_to_exclude=_float_layers(prepared),
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    except Exception as exc:  # onnxruntime's quantiser raises what its graph passes meet, of any type
        raise AffectkitError(f"Static int8 quantisation of {fp32.name} failed ({type(exc).__name__}: {exc}); --int8 "
                             "without --calibration quantises its dense layers only.") from exc
    finally:
        prepared.unlink(missing_ok=True)


def _float_layers(path: Path) -> list[str]:
    """The layers a static export leaves in float, where an int8 scale cannot hold what they carry: weights with a
    channel of zeros (a per-channel scale of 0 is NaN; a class the model never learnt, Contempt for a 7-class set,
    leaves such a row in the expression head, a model without valence or arousal its whole head), and a padding of
    -inf (MiniXception's "same" max-pooling) with the layers it feeds."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    values |= {node.output[0]: numpy_helper.to_array(node.attribute[0].t) for node in graph.node
               if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"}
    kept = []
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in values:
            magnitude = np.abs(values[node.input[1]])
            by_output = magnitude.reshape(len(magnitude), -1).max(axis=1)  # a convolution's, or (out, in) Gemm's
            by_column = magnitude.max(axis=0) if magnitude.ndim == 2 else by_output  # (in, out): MatMul's
            if (by_output == 0).any() or (by_column == 0).any():
                kept.append(node.name)
        elif (node.op_type == "Pad" and len(node.input) > 2 and node.input[2] in values
              and not np.isfinite(values[node.input[2]]).all()):
            kept += [node.name] + [other.name for other in graph.node if node.output[0] in other.input]
    return kept


def export_onnx(model_path: str | Path, out: str | Path | None = None, int8: bool = False,
                opset: int = DEFAULT_OPSET, calibration: Sequence[np.ndarray] | None = None) -> Path:
    """Write ``<stem>.onnx`` (or ``out``) and, with ``int8``, ``<stem>.int8.onnx``; returns the float32 file.
    ``calibration``: face crops (RGB uint8, any size) that make the int8 export static, its convolutions quantised
    too with the activation ranges they give (faster on a CPU, under a third of the file); without them only the dense
    layers are quantised (dynamic)."""
    if calibration is not None and not int8:
        raise AffectkitError("Calibration faces are for the int8 export: add int8.")
    if calibration is not None and not len(calibration):
        raise AffectkitError("No calibration faces: a static int8 export reads its activation ranges from them.")
    weights, _ = model_paths(model_path)
    model, meta = load_model(weights)
    out = Path(out) if out is not None else weights.with_suffix(".onnx")
    if out.suffix != ".onnx":
        raise AffectkitError(f"Export target {out} must end in .onnx.")
    out.parent.mkdir(parents=True, exist_ok=True)
    _export_fp32(model.float().eval(), int(meta["input_size"]), out, opset, _onnx_metadata(meta, weights))
    if int8:
        quantize_onnx(out, int8_path(out), None if calibration is None else model_inputs(calibration, meta))
    return out


def model_inputs(faces: Sequence[np.ndarray], meta: dict) -> list[np.ndarray]:
    """Face crops (RGB uint8, any size) as batches of the inputs of the model ``meta`` describes."""
    size = int(meta["input_size"])
    mean, std = input_normalization(meta)
    return [preprocess(faces[start:start + CALIBRATION_BATCH], size, mean, std)
            for start in range(0, len(faces), CALIBRATION_BATCH)]


def random_inputs(n: int, meta: dict, seed: int = 0) -> np.ndarray:
    """Uniform images normalised like the model's inputs: the value range real inputs have."""
    rng = np.random.default_rng(seed)
    size = int(meta["input_size"])
    mean, std = (value[:, None, None] for value in input_normalization(meta))
    return ((rng.random((n, 3, size, size), dtype=np.float32) - mean) / std).astype(np.float32)


def exports_difference(first: Path, second: Path, meta: dict, n: int = 8) -> float:
    """Largest absolute difference between two exports of the model ``meta`` describes, over all three outputs on
    ``n`` images (:func:`random_inputs`), each run as :func:`convert_to_ort` optimises a graph: an x86 layout's
    other order of float sums flips an int8 rounding here and there, which would hide whether a conversion is exact."""
    import onnxruntime as ort

    batch = random_inputs(n, meta)

    def outputs(path: Path) -> list[np.ndarray]:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                       disabled_optimizers=[X86_LAYOUT_TRANSFORMER])
        return session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})

    return float(max(np.abs(a - b).max() for a, b in zip(outputs(first), outputs(second))))


def onnx_parity(model_path: str | Path, onnx_path: str | Path, n: int = 8) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime over all three outputs on ``n`` images."""
    model, meta = load_model(model_paths(model_path)[0])
    batch = random_inputs(n, meta)
    with torch.inference_mode():
        expected = [o.numpy() for o in model(torch.from_numpy(batch))]
    actual = OnnxBackend(Path(onnx_path))(batch)
    return float(max(np.abs(a - e).max() for a, e in zip(actual, expected)))
