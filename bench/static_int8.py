"""Static int8 quantisation of a run's convolutions (`export --int8 --calibration`), against the dynamic int8 of its
dense layers (`export --int8`) and against static settings left out.

Dynamic quantisation leaves the convolutions in float (onnxruntime's ConvInteger is no faster than the float
convolution here). Static quantisation (QDQ, activation ranges calibrated on training faces) quantises them too and
runs them through onnxruntime's QLinearConv. For each of a run's saved models: test accuracy, agreement with fp32 and
median latency of one face, for the float export, the dynamic int8 export, the static export as `export` writes it
(weights per channel in 7 bits) and two 8-bit settings (per channel; per tensor), the calibration faces drawn from
the run's train split.

    affectkit demo --out demo_run                   # or any run folder with best_<Model>.safetensors and splits.csv
    python bench/static_int8.py --run demo_run --data DATA

Writes static_int8.md (--out).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import onnxruntime as ort

from affectkit.data.splits import random_subsample
from affectkit.inference.export import export_onnx, int8_path, model_inputs, quantize_onnx
from affectkit.inference.quant_report import compare_exports
from affectkit.pipeline.run import evaluation_data

from run_models import add_run_options, copied_models

# Static settings left out, as (per_channel, reduce_range): the export's own is (True, True).
LEFT_OUT = {"static, 8-bit weights per channel": (True, False), "static, 8-bit weights per tensor": (False, False)}


def _int8_instructions() -> str:
    """Whether this CPU multiplies int8 with VNNI (no saturating int16 step), which the 8-bit rows depend on."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "CPU's int8 instructions unknown"
    found = [name for name in ("avx512_vnni", "avx_vnni", "avx512bw", "avx2") if f" {name}" in flags]
    return "CPU with " + (", ".join(found) if found else "none of AVX2, AVX-512 BW, VNNI")


def measure(model: Path, data: Path, splits: Path, calibration: int) -> list[list]:
    work = model.parent
    prepared = evaluation_data(model, data, "test", splits)
    test = prepared.positions("test")
    train = prepared.positions("train")
    chosen = train[random_subsample(len(train), calibration, seed=0)]  # export's draw; MinMax ranges ignore order
    faces = list(prepared.images[chosen])
    fp32 = export_onnx(model, int8=True)
    variants = {"dynamic int8, dense layers (export --int8)": Path(shutil.copy(int8_path(fp32), work / "0.onnx"))}
    export_onnx(model, int8=True, calibration=faces)
    variants["static, 7-bit weights per channel (export --int8 --calibration)"] = int8_path(fp32)
    batches = model_inputs(faces, json.loads(model.with_suffix(".json").read_text()))
    for label, (per_channel, reduce_range) in LEFT_OUT.items():
        variants[label] = work / f"{len(variants)}.onnx"
        quantize_onnx(fp32, variants[label], batches, per_channel=per_channel, reduce_range=reduce_range)
    rows = []
    for label, path in variants.items():
        report = compare_exports(fp32, path, prepared.images[test], prepared.expression[test],
                                 latency_images=len(test))
        if not rows:
            rows.append([model.stem.removeprefix("best_"), "fp32 ONNX", report["fp32"]["size_mb"],
                         report["fp32"]["accuracy"], 1.0, report["fp32"]["latency_ms"]])
        rows.append([model.stem.removeprefix("best_"), label, report["int8"]["size_mb"],
                     report["int8"]["accuracy"], report["agreement"], report["int8"]["latency_ms"]])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(parser)
    parser.add_argument("--calibration", type=int, default=256, help="training faces the ranges are calibrated on "
                        "(export's number)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    ort.set_default_logger_severity(3)
    start = time.perf_counter()
    rows = [row for model, splits in copied_models(args) for row in measure(model, args.data, splits,
                                                                             args.calibration)]
    lines = ["# Static int8 quantisation of the convolutions, against `export --int8`", "",
             f"Run `{args.run}`, test split of `{args.data}`; {args.calibration} calibration faces from its train "
             f"split; onnxruntime {ort.__version__} with its own thread count, {_int8_instructions()}; latency: "
             "median of one face at a time over the test faces. Bench wall time "
             f"{(time.perf_counter() - start) / 60:.1f} min.", "",
             "| model | export | size (MB) | test accuracy | agreement with fp32 | ms/face |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {m} | {v} | {s:.2f} | {a:.3f} | {g:.3f} | {t:.2f} |" for m, v, s, a, g, t in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "static_int8.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
