"""Training and inference speed on this machine, and what the data path and the phase-1 feature cache buy.

For each model: images/s of a phase-2 training step fed by the real data pipeline (decoded cache, augmentation,
DataLoader workers) and fed by a batch already in memory (the framework's ceiling); their ratio is the pipeline
efficiency. Then a phase-1 step (frozen backbone), and inference with PyTorch and onnxruntime; all in the precision
the product trains in (bf16 autocast on CPUs with native bf16). For ResNet50 also an fp32 step and its fraction of
the CPU's peak FP32 rate. Finally phase 1 of 30 epochs trained the naive way and on stored features, with both
runs' validation accuracy.

    python bench/train_speed.py                 # about 6.5 minutes on 2 cores
    python bench/train_speed.py --img-size 224 --steps 4

The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from affectkit.config import Config
from affectkit.data.datamodule import AffectDataModule, normalise_batch, prepare_data
from affectkit.data.synthetic import make_demo_dataset
from affectkit.models import build_model
from affectkit.training.features import make_runner
from affectkit.training.hardware import resolve_accelerator, uses_bf16
from affectkit.training.losses import multitask_loss
from affectkit.training.trainer import train_model

RESNET50_FORWARD_GFLOP = 8.2  # per 224x224 image; a training step is about three forward passes


def peak_gflops(cores: int, ghz: float) -> float:
    """2 FMA units x 16 fp32 lanes (AVX-512) x 2 flops per FMA, per core per cycle."""
    return cores * 2 * 16 * 2 * ghz


def _step(model, optimizer, batch, config: Config, bf16: bool) -> None:
    images, labels, va, _ = batch
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits, v, a = model(normalise_batch(images))
    loss, _ = multitask_loss(logits.float(), v.float(), a.float(), labels, va, config.loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def images_per_second(fn, batches, batch_size: int) -> float:
    fn(next(batches))  # warm-up (allocator, oneDNN primitive caches)
    start = time.perf_counter()
    n = 0
    for batch in batches:
        fn(batch)
        n += batch_size
    return n / (time.perf_counter() - start)


def paired_rates(step, loader, fixed, batch_size: int, steps: int) -> tuple[float, float]:
    """images/s fed by the data pipeline and fed a batch already in memory, timed in alternation so that clock and
    allocator drift hit both alike; each from the median step time, so that a hiccup of this shared machine during
    one step does not decide the ratio."""
    step(fixed)
    step(next(loader))  # warm-up (allocator, oneDNN primitive caches)
    fed, in_memory = [], []
    for _ in range(steps):
        start = time.perf_counter()
        step(next(loader))
        middle = time.perf_counter()
        step(fixed)
        fed.append(middle - start)
        in_memory.append(time.perf_counter() - middle)
    return batch_size / float(np.median(fed)), batch_size / float(np.median(in_memory))


def measure_model(name: str, datamodule: AffectDataModule, config: Config, steps: int) -> dict:
    """Every rate in the precision the product trains in (``precision: auto``); ResNet50 also in fp32."""
    model = build_model(name, config).to(memory_format=torch.channels_last).train()
    bf16 = uses_bf16(config, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    fixed = next(iter(datamodule.train_dataloader()))
    pipeline, in_memory = paired_rates(lambda b: _step(model, optimizer, b, config, bf16),
                                       iter(datamodule.train_dataloader()), fixed, config.batch_size, steps)
    result = {"pipeline": pipeline, "in_memory": in_memory, "efficiency": pipeline / in_memory}
    if name == "resnet50":
        result["in_memory_fp32"] = images_per_second(lambda b: _step(model, optimizer, b, config, False),
                                                     (fixed for _ in range(steps + 1)), config.batch_size)
    if model.spec.two_phase:
        model.set_backbone_trainable(False)
        head_opt = torch.optim.Adam(model.head.parameters(), lr=1e-3, fused=True)
        result["phase1"] = images_per_second(lambda b: _step(model, head_opt, b, config, bf16),
                                             (fixed for _ in range(steps + 1)), config.batch_size)
    model.eval()
    x = normalise_batch(fixed[0])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        result["infer_torch"] = images_per_second(lambda b: model(b), (x for _ in range(steps + 1)), len(x))
    runner = make_runner(model, config.img_size)  # onnxruntime, fp32
    result["infer_backbone_onnx"] = images_per_second(lambda b: runner(b), (x.contiguous() for _ in range(steps + 1)), len(x))
    return result


def phase1_comparison(datamodule_data, run_root: Path, config: Config, weights: Path | None, repeats: int) -> dict:
    """Phase 1 of ``config.epochs`` epochs, naive vs stored features; same split, seed and budget. The stored path
    is short enough for this shared machine's hiccups to move it by a third, so it runs ``repeats`` times (each
    from scratch, features included; the runs are deterministic, so only the time varies) and the median counts."""
    out = {}
    for label, cached, runs in (("naive", False, 1), ("features", True, repeats)):
        cfg = config.override(phase1_feature_cache=cached, fine_tune_epochs=0, early_stopping_patience=1000)
        seconds = []
        for run in range(runs):
            start = time.perf_counter()
            result = train_model("resnet50", datamodule_data, run_root / f"{label}{run}", cfg, weights=weights,
                                 quiet=True)
            seconds.append(time.perf_counter() - start)
        out[label] = {"seconds": float(np.median(seconds)), "all_seconds": seconds,
                      "best_val_acc": float(result.history["val_acc"].max())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="AffectNet-layout data (default: 1600 fresh demo faces)")
    parser.add_argument("--models", default="resnet50,efficientnet_b0,custom_cnn")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    parser.add_argument("--phase1-img-size", type=int, default=64)
    parser.add_argument("--phase1-epochs", type=int, default=30)
    parser.add_argument("--phase1-repeats", type=int, default=3, help="runs of the stored-features path (median)")
    parser.add_argument("--weights", type=Path, help="ResNet50 backbone weights for the phase-1 comparison "
                        "(without them both runs train a head on random features, so both stay near chance)")
    parser.add_argument("--ghz", type=float, default=2.3, help="nominal clock for the peak FLOP rate")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="affectkit-bench-"))
    os.environ.setdefault("AFFECTKIT_CACHE", str(tmp / "cache"))
    data = args.data or make_demo_dataset(tmp / "demo", n=1600, seed=0, progress=False)
    cores = os.cpu_count() or 1
    config = Config(img_size=args.img_size, batch_size=args.batch_size, seed=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cores} cores, img {args.img_size}, "
          f"batch {args.batch_size}, precision: auto = {resolve_accelerator(config)[1]} (fp32 for grouped convolutions)")

    prepared = prepare_data(data, config, progress=False)
    datamodule = AffectDataModule(prepared, config)
    efficiencies, fraction = [], float("nan")
    print(f"{'model':16s} {'pipeline':>9s} {'in-memory':>9s} {'effic.':>7s} {'phase1':>8s} {'infer':>8s} {'bb-onnx':>8s}  (images/s)")
    for name in args.models.split(","):
        r = measure_model(name, datamodule, config, args.steps)
        efficiencies.append(r["efficiency"])
        print(f"{name:16s} {r['pipeline']:9.1f} {r['in_memory']:9.1f} {r['efficiency']:7.3f} "
              f"{r.get('phase1', float('nan')):8.1f} {r['infer_torch']:8.1f} {r['infer_backbone_onnx']:8.1f}")
        if name == "resnet50":
            per_image = 3 * RESNET50_FORWARD_GFLOP * (args.img_size / 224) ** 2
            peak = peak_gflops(cores, args.ghz)
            fraction = per_image * r["in_memory_fp32"] / peak
            print(f"  ResNet50 training in fp32: {r['in_memory_fp32']:.1f} images/s = {per_image * r['in_memory_fp32']:.1f}"
                  f" GFLOP/s of a {peak:.0f} GFLOP/s FP32 peak ({cores} cores at {args.ghz} GHz) = {fraction:.3f}; "
                  f"in the product's precision {r['in_memory']:.1f} images/s ({r['in_memory'] / r['in_memory_fp32']:.2f}x)")

    p1_config = Config(img_size=args.phase1_img_size, batch_size=32, epochs=args.phase1_epochs, seed=0)
    p1_data = prepare_data(data, p1_config, progress=False)
    p1 = phase1_comparison(p1_data, tmp / "phase1", p1_config, args.weights, args.phase1_repeats)
    speedup = p1["naive"]["seconds"] / p1["features"]["seconds"]
    print(f"phase 1, {args.phase1_epochs} epochs of ResNet50 at {args.phase1_img_size}px: "
          f"naive {p1['naive']['seconds']:.1f}s (best val acc {p1['naive']['best_val_acc']:.3f}), "
          f"stored features {p1['features']['seconds']:.1f}s (median of "
          f"{', '.join(f'{t:.1f}' for t in p1['features']['all_seconds'])}; best val acc "
          f"{p1['features']['best_val_acc']:.3f}), "
          f"speed-up {speedup:.1f}x, accuracy difference "
          f"{100 * (p1['features']['best_val_acc'] - p1['naive']['best_val_acc']):+.1f} points"
          + ("" if args.weights else " (random backbone: both near chance; pass --weights for a meaningful comparison)"))
    print(f"pipeline_efficiency={min(efficiencies):.3f} phase1_speedup={speedup:.2f} resnet50_peak_fraction={fraction:.3f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
