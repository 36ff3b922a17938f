"""What one `affectkit predict` costs a process: its wall time, its peak memory and the heavy libraries it loads, for
a model served from its ONNX export and from PyTorch, on face crops (--no-detect) and with face detection; and a
server of the ONNX export on face crops, answering one request.

    python bench/predict_startup.py [--repeats 3] [--src OTHER_CHECKOUT/src] [--out bench/results/predict_startup.md]

Each run is a fresh Python process (as a command-line call or a container's start is); its peak memory is read from
/proc (Linux). ``--src`` runs the affectkit of another checkout instead of the installed one (a before/after
comparison on the same machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "timm", "torchmetrics", "lightning", "onnxruntime")
# What each child prints last: its peak memory and the heavy libraries it loaded. VmHWM, not ru_maxrss: Linux keeps
# ru_maxrss across exec, so it would count the parent's memory too.
REPORT = """
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_mb": int(peak.split()[1]) / 1024, "loaded": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)
CHILD = """
import json, sys
from affectkit.cli import main
sys.argv = ["affectkit", "predict", *{args!r}, "--quiet", "--out", {out!r}]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
"""
SERVE_CHILD = """
import json, sys
from fastapi.testclient import TestClient
from affectkit.serving import create_app
app = create_app({model!r}, detect={detect!r})
files = [("files", ("face.jpg", open({face!r}, "rb").read(), "image/jpeg"))]
assert TestClient(app).post("/v1/predict", files=files).status_code == 200
"""


def _model(folder: Path) -> tuple[Path, Path]:
    """An untrained custom CNN at 64 px and its ONNX export, and one demo face."""
    import torch

    from affectkit.config import Config
    from affectkit.data.synthetic import make_demo_dataset
    from affectkit.inference.export import export_onnx
    from affectkit.models import build_model, save_model

    torch.manual_seed(0)
    config = Config(img_size=64)
    weights = save_model(build_model("custom_cnn", config), folder / "best_CustomCNN", config)
    export_onnx(weights)
    data = make_demo_dataset(folder / "data", n=8, seed=0, progress=False)
    return weights, data / "images" / "0.jpg"


def _run(code: str, src: str | None) -> tuple[float, dict] | None:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    start = time.perf_counter()
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if ran.returncode != 0:  # an option the checkout of --src does not have
        return None
    return seconds, json.loads(ran.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--src", help="a checkout's src folder whose affectkit to run")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weights, face = _model(Path(tmp))
        onnx, out = str(weights.with_suffix(".onnx")), str(Path(tmp) / "out.csv")
        predict = {
            "ONNX, face crops (--no-detect)": [onnx, str(face), "--no-detect"],
            "ONNX, faces detected": [onnx, str(face)],
            "ONNX, faces detected by OpenCV's cascade (--detector haar)": [onnx, str(face), "--detector", "haar"],
            "PyTorch, face crops (--no-detect)": [str(weights), str(face), "--no-detect", "--backend", "torch"],
            "PyTorch, faces detected": [str(weights), str(face), "--backend", "torch"],
        }
        cases = {f"predict: {name}": CHILD.format(args=case, out=out) + REPORT for name, case in predict.items()}
        cases["a server of the ONNX model (create_app, one request), face crops"] = SERVE_CHILD.format(
            model=onnx, detect=False, face=str(face)) + REPORT
        lines = [f"affectkit from {args.src or 'the installed package'}; {args.repeats} fresh processes per case, "
                 "median (one demo face, an untrained 64 px custom CNN).", "",
                 "| case | wall s | peak MB | heavy libraries loaded |", "|---|---|---|---|"]
        for name, case in cases.items():
            runs = [_run(case, args.src) for _ in range(args.repeats)]
            if None in runs:
                lines.append(f"| {name} | failed (an option this version lacks?) | | |")
                continue
            wall = statistics.median(seconds for seconds, _ in runs)
            peak = statistics.median(found["peak_mb"] for _, found in runs)
            lines.append(f"| {name} | {wall:.2f} | {peak:.0f} | {', '.join(runs[0][1]['loaded']) or 'none'} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
