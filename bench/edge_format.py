"""ONNX Runtime Mobile's format (`export --format ort`) against the ONNX files it is converted from: size, the time
a device takes to load the model, latency of one face, and whether it answers the test faces as the ONNX file does.

An `.ort` file's graph was optimised once at export, so loading it skips that step; it is made without the x86-only
NCHWc layout, so it runs on ARM phones and boards as on x86, where the `.onnx` file gets that layout at load. For each
of a run's saved models: the float export and the static int8 one (`--int8 --calibration`, ranges from 256 train
faces), each as `.onnx` and `.ort`.

    affectkit demo --out demo_run                   # or any run folder with best_<Model>.safetensors and splits.csv
    python bench/edge_format.py --run demo_run --data DATA

Writes edge_format.md (--out).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import onnxruntime as ort

from affectkit.inference.export import convert_to_ort, export_onnx, int8_path
from affectkit.inference.quant_report import compare_exports
from affectkit.pipeline.export import calibration_faces
from affectkit.pipeline.run import evaluation_data

from run_models import add_run_options, copied_models

LOADS = 5


def load_ms(path: Path) -> float:
    """Median wall-clock milliseconds to create an onnxruntime session for ``path`` (as a device starting up)."""
    times = []
    for _ in range(LOADS):
        start = time.perf_counter()
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(model: Path, data: Path, splits: Path) -> list[list]:
    prepared = evaluation_data(model, data, "test", splits)
    test = prepared.positions("test")
    faces, labels = list(prepared.images[test]), prepared.expression[test]
    calibration, _ = calibration_faces(model, data)  # the run's train split, as `export --calibration DATA` draws
    fp32 = export_onnx(model, int8=True, calibration=calibration)
    rows = []
    for label, onnx_file in (("fp32", fp32), ("static int8", int8_path(fp32))):
        ort_file = convert_to_ort(onnx_file)
        report = compare_exports(onnx_file, ort_file, faces, labels, latency_images=len(faces))
        for kind, path, key in ((".onnx", onnx_file, "fp32"), (".ort", ort_file, "int8")):
            rows.append([model.stem.removeprefix("best_"), f"{label} {kind}", report[key]["size_mb"], load_ms(path),
                         report[key]["accuracy"], 1.0 if kind == ".onnx" else report["agreement"],
                         report[key]["latency_ms"]])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(parser)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    ort.set_default_logger_severity(3)
    start = time.perf_counter()
    rows = [row for model, splits in copied_models(args) for row in measure(model, args.data, splits)]
    lines = ["# ONNX Runtime Mobile's format (`export --format ort`) against ONNX", "",
             f"Run `{args.run}`, test split of `{args.data}`; onnxruntime {ort.__version__} with its own thread count "
             f"on this x86 CPU; load: median of {LOADS} session creations; latency: median of one face at a time over "
             f"the test faces; agreement: the same class as the `.onnx` file it was converted from. Bench wall time "
             f"{(time.perf_counter() - start) / 60:.1f} min.", "",
             "| model | file | size (MB) | load (ms) | test accuracy | agreement with .onnx | ms/face |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {m} | {f} | {s:.2f} | {lo:.0f} | {a:.3f} | {g:.3f} | {t:.2f} |" for m, f, s, lo, a, g, t in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "edge_format.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
