"""``affectkit export``: a saved model's ONNX export, its int8 export (static where calibration faces are given), the
two compared on faces of a data set, and each in ONNX Runtime Mobile's format (``--format ort``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectkit.data.reader import layout_found
from affectkit.data.splits import random_subsample
from affectkit.errors import AffectkitError
from affectkit.inference.export import (
    DEFAULT_OPSET,
    convert_to_ort,
    export_onnx,
    exports_difference,
    int8_path,
    onnx_parity,
    operators_path,
    quantization_description,
    write_operators,
)
from affectkit.inference.quant_report import compare_exports, folder_images
from affectkit.models.metadata import config_from_metadata, model_paths, read_metadata
from affectkit.pipeline.run import evaluation_data, training_source
from affectkit.runs import model_splits

CALIBRATION_FACES = 256
FORMATS = ("onnx", "ort")


@dataclass
class ExportResult:
    onnx: Path  # the float file: predict, serve and load take it where it sits beside the model
    parity: float  # max |ONNX - PyTorch| over all outputs, on random inputs
    int8: Path | None = None  # <stem>.int8.onnx
    quantization: str | None = None  # what the int8 file says it is ("static int8: ...")
    int8_parity: float | None = None  # a dynamic export's; random inputs lie outside a static one's ranges
    calibration: str | None = None  # where a static export's faces were drawn from
    comparison: dict | None = None  # with data: both exports' size, accuracy, latency and agreement
    ort: Path | None = None  # format ort: <stem>.ort, the float file in ONNX Runtime Mobile's format
    ort_parity: float | None = None  # max |.ort - PyTorch| over all outputs, on random inputs
    ort_int8: Path | None = None  # format ort with int8: <stem>.int8.ort
    ort_int8_parity: float | None = None  # max |.int8.ort - .int8.onnx|: the int8 file's conversion, checked
    operators: Path | None = None  # format ort: <stem>.required_operators.config, the operators the .ort files use


def export_model(model_path: Path, out: Path | None = None, int8: bool = False, calibration: Path | None = None,
                 data: Path | None = None, split: str = "test", splits: Path | None = None,
                 limit: int | None = None, opset: int | None = None, format: str = "onnx") -> ExportResult:
    """The ONNX export of a saved model (``out``, default beside it) and, with ``int8``, its int8 export: static,
    from :func:`calibration_faces` of ``calibration``, where given, else dynamic; with ``data``, the two compared
    (:func:`compare_exports_on`). ``opset`` None: ``DEFAULT_OPSET``. ``format`` ort: each export also in ONNX
    Runtime Mobile's format (:func:`convert_to_ort`; ``out`` may then name the ``.ort`` file, the ``.onnx`` going
    beside it) with the operators they use (:func:`write_operators`)."""
    format = format.lower()
    if format not in FORMATS:
        raise AffectkitError(f"--format {format}: choose onnx, or ort (also ONNX Runtime Mobile's format).")
    if out is not None and Path(out).suffix == ".ort":
        if format != "ort":
            raise AffectkitError(f"--out {out} is an ONNX Runtime Mobile file: add --format ort.")
        out = Path(out).with_suffix(".onnx")
    if data is not None and not int8:
        raise AffectkitError("--data compares the float and int8 exports; add --int8.")
    if calibration is not None and not int8:
        raise AffectkitError("--calibration makes the int8 export static; add --int8.")
    for option, path in (("--data", data), ("--calibration", calibration)):
        if path is not None and not Path(path).exists():
            raise AffectkitError(f"{option} {path} does not exist.")
    faces, source = calibration_faces(model_path, calibration) if calibration is not None else (None, None)
    fp32 = export_onnx(model_path, out=out, int8=int8, opset=DEFAULT_OPSET if opset is None else opset,
                       calibration=faces)
    result = ExportResult(fp32, onnx_parity(model_path, fp32))
    if int8:
        result.int8 = int8_path(fp32)
        result.quantization = quantization_description(None if faces is None else len(faces))
        result.int8_parity = onnx_parity(model_path, result.int8) if faces is None else None
        result.calibration = source
    if data is not None:
        result.comparison = compare_exports_on(model_path, fp32, result.int8, data, split, splits, limit)
    if format == "ort":
        result.ort = convert_to_ort(fp32)
        result.ort_parity = onnx_parity(model_path, result.ort)
        if int8:
            result.ort_int8 = convert_to_ort(result.int8)
            result.ort_int8_parity = exports_difference(result.int8, result.ort_int8, read_metadata(model_path))
        result.operators = write_operators([p for p in (result.ort, result.ort_int8) if p is not None],
                                           operators_path(fp32))
    return result


def calibration_faces(model_path: Path, data: Path, limit: int = CALIBRATION_FACES,
                      seed: int = 0) -> tuple[list[np.ndarray], str]:
    """At most ``limit`` faces of ``data`` (drawn at random) for a static int8 export to read its activation ranges
    from, and a phrase saying where from ("drawn from ..."): the model's train split where ``data`` is the data set it
    was trained on (its test faces stay unseen by the export), else every face of ``data`` as the model reads faces
    (no label is read), or a folder of face crops, each image read whole."""
    if (crops := _face_crops(model_path, data, "--calibration", limit, seed)) is not None:
        return crops[0], f"drawn from the images of {data}, each read whole as a face"
    own = training_source(model_path) == Path(data).resolve() and model_splits(model_paths(model_path)[0]).is_file()
    split = "train" if own else "all"
    prepared = evaluation_data(model_path, data, split, None)
    positions = prepared.positions(split)
    positions = positions[random_subsample(len(positions), limit, seed)]
    return list(prepared.images[positions]), (f"drawn from the train split of {data}" if own else
                                              f"drawn from every face of {data}")


def compare_exports_on(model_path: Path, fp32: Path, int8: Path, data: Path, split: str = "test",
                       splits: Path | None = None, limit: int | None = None, seed: int = 0) -> dict:
    """The float and int8 exports of a saved model compared (:func:`compare_exports`) on the faces of ``data``: a
    data set in any layout, ``split`` of it as :func:`evaluation_data` picks it, its faces as the model reads them
    and their classes (at most ``limit``, drawn at random); or a folder of face crops without labels, each image read
    whole. The report's ``source`` says which."""
    if (crops := _face_crops(model_path, data, "--data", limit, seed)) is not None:
        faces, unreadable = crops
        source = f"{len(faces)} images of {data} read whole as faces (not a labelled data set)"
        if unreadable:
            source += f"; {len(unreadable)} unreadable, left out (the first: {unreadable[0]})"
        return compare_exports(fp32, int8, faces) | {"source": source}
    prepared = evaluation_data(model_path, data, split, splits)
    positions = prepared.positions(split)
    positions = positions[random_subsample(len(positions), limit, seed)]
    source = f"{len(positions)} faces of {data} ({split} split)"
    return compare_exports(fp32, int8, prepared.images[positions], prepared.expression[positions]) | {"source": source}


def _face_crops(model_path: Path, data: Path, option: str, limit: int | None,
                seed: int) -> tuple[list[np.ndarray], list[str]] | None:
    """Where ``data`` is no data set the model's reading settings find, a folder of face crops: its images read whole
    (at most ``limit``, drawn at random) and the reasons of those unreadable; None where it is a data set. A folder
    without one readable image is refused, named as ``option``."""
    config = config_from_metadata(read_metadata(model_path))
    if layout_found(data, config.label_pattern, config.class_map, config.cache_dir):
        return None
    faces, unreadable = folder_images(data, limit, seed)
    if not faces:
        raise AffectkitError(f"{option} {data}: no readable image, and not a data set affectkit reads."
                             + (f" {unreadable[0]}" if unreadable else ""))
    return faces, unreadable
