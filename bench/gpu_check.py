"""The spec profile on a CUDA GPU: is the GPU kept fed, how fast is each model, does a real run work there.

On about 8,000 demo faces rendered at 224 px (with every CPU core), for ResNet50, EfficientNet-B0 and the custom CNN
at batch 128 and the spec's 32, in the product's precision (``precision: auto``: bf16 autocast on a GPU with bf16):

- training images/s through the product's path (the DataModule's loader with its worker processes and pinned
  memory, Lightning's Trainer with the product's hardware settings, the LightningModule's step) against the same
  Trainer and model fed a batch already on the GPU; their ratio is the pipeline efficiency. At the largest batch
  also: a bare PyTorch step (no Lightning) on that batch, what the framework costs; the loader with a worker per
  core but one; and ``augment_on_device`` (the loader draws each flip and warp, the GPU applies them). GPU
  utilisation (NVML, sampled) and peak GPU memory;
- ResNet50's training FLOP rate against the H200's bf16 dense peak, its FLOPs counted by PyTorch's FlopCounterMode
  for one training step, and against a measured bf16 matrix product;
- ``compile: true`` (torch.compile) against eager; phase 1 on stored features against the naive way;
- evaluation (the evaluator's ``predict_split``) and inference images/s through PyTorch, and through ONNX Runtime
  where its CUDA provider loads;
- a real ``affectkit train --model resnet50`` (spec defaults, 2 + 2 epochs), killed once in phase 2 and resumed.

    bash bench/gpu_check.sh [--out DIR]                      # every section: about 9 minutes on an H200, 16 cores
    bash bench/gpu_check.sh --skip cli,compile --out DIR    # the speeds alone: about 5 minutes
    bash bench/gpu_check.sh --budget-s 300 --out DIR        # no section starts after 300 s

Without a GPU it says so and exits 0. Results go to DIR/gpu_check.json; the last line is machine-readable.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

H200_BF16_DENSE_TFLOPS = 989.5  # NVIDIA's H200 SXM datasheet (the H100's tensor cores): dense, no sparsity
DEVICE = "cuda"  # "cpu" under --dry-run-on-cpu, which only exercises this script's code paths


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else 0.0


def reset_peak() -> None:
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()


class Results(dict):
    """Everything measured, written to disk after each section so that a run cut short keeps what it had."""

    def __init__(self, path: Path | None, budget_s: float | None = None):
        super().__init__()
        self.path = path
        self.deadline = time.perf_counter() + budget_s if budget_s else None

    def section(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        if self.deadline is not None and start > self.deadline:  # a lease's limit would cut it halfway
            self[name] = {"skipped": "--budget-s spent before this section started"}
        else:
            try:
                self[name] = fn(*args, **kwargs)
            except Exception as exc:  # one broken section must not cost the others' numbers
                traceback.print_exc()
                self[name] = {"error": f"{type(exc).__name__}: {exc}"}
            self[name + "_seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps({name: self[name]}, default=float), flush=True)
        if self.path is not None:
            self.path.write_text(json.dumps(self, indent=2, default=float))
        return self[name]


class UtilisationSampler:
    """Mean GPU utilisation (NVML's percentage of time a kernel ran) over a timed window."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.samples, self._stop = interval, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if DEVICE == "cuda":
                    self.samples.append(torch.cuda.utilization())
            except Exception:  # no NVML bindings: no utilisation figure
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def matmul_tflops(n: int = 8192, repeats: int = 10) -> float:
    n = n if DEVICE == "cuda" else 256
    a = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    return 2 * n**3 * timed(lambda: a @ b, 1, repeats) / 1e12


def timed(fn, images: int, repeats: int = 10) -> float:
    """images/s of ``fn`` (which handles ``images`` each call) over ``repeats`` calls after two warm-up calls."""
    fn()
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return images * repeats / (time.perf_counter() - start)


def make_data(root: Path, n: int, img_size: int, config):
    """The demo faces in ``root/faces`` (rendered with every core unless a run before left them there) and their
    pixel cache."""
    from affectkit.config import DATA_CONFIG_NAME
    from affectkit.data.datamodule import available_cores, prepare_data
    from affectkit.data.synthetic import is_synthetic_data, make_demo_dataset

    start = time.perf_counter()
    data = root / "faces"
    if not is_synthetic_data(data):
        make_demo_dataset(data, n=n, seed=0, img_size=img_size, progress=False, workers=available_cores())
        # The folder's demo profile would set `affectkit train`'s recipe; this check runs the spec's defaults.
        (data / DATA_CONFIG_NAME).unlink(missing_ok=True)
    rendered = time.perf_counter() - start
    start = time.perf_counter()
    prepared = prepare_data(data, config, progress=False)
    return data, prepared, {"faces": len(prepared.records), "render_s": round(rendered, 1),
                            "cache_s": round(time.perf_counter() - start, 1),
                            "train_images": int(len(prepared.positions("train")))}


def trainer_hardware(config, model) -> dict:
    """The product's Trainer hardware settings (``hardware_options``); for the sources before it existed (the
    before-the-fixes measurement runs this script on them), what they passed: accelerator, devices, precision."""
    try:
        from affectkit.training.trainer import hardware_options
    except ImportError:
        from affectkit.training.hardware import resolve_accelerator

        accelerator, precision = resolve_accelerator(config, model)
        return {"accelerator": accelerator, "devices": config.devices, "num_nodes": config.num_nodes,
                "precision": precision}
    return hardware_options(config, model)


def training_flops_per_image(name: str, config) -> float:
    """FLOPs of one training step (forward and backward) per image, as PyTorch's FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    from affectkit.models import build_model

    model = build_model(name, config).to(DEVICE)
    x = torch.randn(2, 3, config.img_size, config.img_size, device=DEVICE)
    counter = FlopCounterMode(display=False)
    with counter:
        logits, valence, arousal = model(x)
        (logits.float().sum() + valence.float().sum() + arousal.float().sum()).backward()
    return counter.get_total_flops() / 2


class StepTimer:
    """A Lightning callback timing ``steps`` training steps after ``warmup`` (GPU synchronised at both ends)."""

    def __init__(self, warmup: int, steps: int):
        import lightning as L

        timer = self

        class _Callback(L.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if trainer.global_step == warmup:  # steps, not batch_idx: a short epoch may end inside the window
                    sync()
                    reset_peak()
                    timer.sampler = UtilisationSampler().__enter__()
                    timer.start = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                if trainer.global_step == warmup + steps:
                    sync()
                    timer.seconds = time.perf_counter() - timer.start
                    timer.sampler.__exit__()
                    timer.peak_gib = peak_gib()

        self.callback = _Callback()
        self.start = self.seconds = self.peak_gib = 0.0
        self.sampler: UtilisationSampler | None = None


class RepeatedBatch:
    """One batch, ``times`` times: an epoch whose data is already on the GPU (a list would be many loaders)."""

    def __init__(self, batch: list[torch.Tensor], times: int):
        self.batch, self.times = batch, times

    def __iter__(self):
        return (self.batch for _ in range(self.times))

    def __len__(self) -> int:
        return self.times


def lightning_rate(name: str, config, prepared, feed: str, warmup: int, steps: int, first_step_s: bool = False) -> dict:
    """Phase-2 training (the whole model) through Lightning, fed by the product's loader (``feed="loader"``) or by one
    batch already on the GPU (``feed="gpu"``)."""
    import lightning as L

    from affectkit.data.datamodule import AffectDataModule
    from affectkit.models import build_model
    from affectkit.training.module import AffectModule

    L.seed_everything(0, verbose=False)
    config = config.override(lr_schedule="cosine")  # the plateau schedule needs validation, which is not timed here
    model = build_model(name, config)
    model.set_backbone_trainable(True)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if config.compile:
        model.compile()
    module = AffectModule(model, config, 1e-4)
    datamodule = AffectDataModule(prepared, config)
    if feed == "loader":
        loader = datamodule.train_dataloader()
    else:
        loader = RepeatedBatch([t.to(DEVICE) for t in next(iter(datamodule.train_dataloader()))], warmup + steps)
    timer = StepTimer(warmup, steps)
    trainer = L.Trainer(max_steps=warmup + steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer.callback],
                        **trainer_hardware(config, model))
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    total = time.perf_counter() - start
    out = {"images_per_s": round(config.batch_size * steps / timer.seconds, 1),
           "gpu_util_pct": timer.sampler.mean if timer.sampler else None, "peak_gib": round(timer.peak_gib, 2),
           "precision": trainer_hardware(config, model)["precision"]}
    if first_step_s:  # compilation happens in the warm-up steps
        out["warmup_s"] = round(total - timer.seconds, 1)
    return out


def bare_rate(name: str, config, prepared, steps: int) -> float:
    """A plain PyTorch training step on one batch already on the GPU: no Lightning, same model, loss and optimiser."""
    from affectkit.data.datamodule import AffectDataModule, normalise_batch
    from affectkit.models import build_model
    from affectkit.training.losses import multitask_loss

    model = build_model(name, config).to(DEVICE).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    images, labels, va, *_ = (t.to(DEVICE) for t in next(iter(AffectDataModule(prepared, config).train_dataloader())))

    def step():
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            logits, v, a = model(normalise_batch(images))
        loss, _ = multitask_loss(logits.float(), v.float(), a.float(), labels, va, config.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # with timed()'s two: five warm-up steps (cuDNN's autotuner, the allocator)
        step()
    return round(timed(step, len(images), repeats=steps), 1)


def training_speeds(config, prepared, models: list[str], batches: list[int], workers_alt: int,
                    extras: bool = True, window: tuple[int, int] | None = None) -> dict:
    """``window``: (warm-up, timed) steps of each rate instead of the measuring ones (a dry run's few)."""
    out = {}
    for name in models:
        for batch in batches:
            cfg = config.override(batch_size=batch)
            warmup, steps = window or ((6, 30) if batch >= 128 else (10, 60))
            row = {"loader": lightning_rate(name, cfg, prepared, "loader", warmup, steps),
                   "gpu_resident": lightning_rate(name, cfg, prepared, "gpu", warmup, steps)}
            row["efficiency"] = round(row["loader"]["images_per_s"] / row["gpu_resident"]["images_per_s"], 3)
            if batch == max(batches) and extras:
                row["bare_pytorch"] = bare_rate(name, cfg, prepared, steps)
                more = lightning_rate(name, cfg.override(num_workers=workers_alt), prepared, "loader", warmup, steps)
                row[f"loader_{workers_alt}_workers"] = more
                row[f"efficiency_{workers_alt}_workers"] = round(
                    more["images_per_s"] / row["gpu_resident"]["images_per_s"], 3)
                # augment_on_device: the loader draws the flip and warp, the GPU applies them; its own GPU-resident
                # rate includes the warp.
                on_device = cfg.override(augment_on_device=True)
                row["augment_on_device"] = {
                    "loader": lightning_rate(name, on_device, prepared, "loader", warmup, steps),
                    "gpu_resident": lightning_rate(name, on_device, prepared, "gpu", warmup, steps)}
                row["augment_on_device"]["efficiency"] = round(row["augment_on_device"]["loader"]["images_per_s"] /
                                                               row["gpu_resident"]["images_per_s"], 3)
            out[f"{name}@{batch}"] = row
            print(name, batch, json.dumps(row), flush=True)
    return out


def compile_speeds(config, prepared, models: list[str]) -> dict:
    out = {}
    for name in models:
        cfg = config.override(batch_size=128)
        eager = lightning_rate(name, cfg, prepared, "gpu", 6, 30)
        compiled = lightning_rate(name, cfg.override(compile=True), prepared, "gpu", 6, 30, first_step_s=True)
        out[name] = {"eager": eager, "compiled": compiled,
                     "speedup": round(compiled["images_per_s"] / eager["images_per_s"], 3)}
    return out


def phase1_comparison(config, prepared, root: Path, epochs: int) -> dict:
    """Phase 1 of ResNet50 (random backbone: no ImageNet weights here; the timing does not depend on them) through
    ``train_model``, the naive way and on stored features."""
    from affectkit.training.trainer import train_model

    out = {}
    for label, cached in (("naive", False), ("stored_features", True)):
        cfg = config.override(batch_size=128, epochs=epochs, fine_tune_epochs=0, phase1_feature_cache=cached,
                              early_stopping_patience=1000, tensorboard=False)
        start = time.perf_counter()
        result = train_model("resnet50", prepared, root / label, cfg, quiet=True)
        out[label] = {"seconds": round(time.perf_counter() - start, 1), "epochs": epochs,
                      "best_val_acc": round(float(result.history["val_acc"].max()), 4)}
    out["speedup"] = round(out["naive"]["seconds"] / out["stored_features"]["seconds"], 2)
    return out


def inference_speeds(config, prepared, models: list[str], repeats: int = 10) -> dict:
    """``repeats``: timed calls of each batch rate (a dry run's one)."""
    from affectkit.data.datamodule import normalise_batch
    from affectkit.evaluation.evaluator import predict_split
    from affectkit.models.metadata import DEFAULT_OPSET
    from affectkit.models import build_model

    out = {}
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:
        ort, providers = None, []
    out["onnxruntime_providers"] = providers
    everything = prepared.positions("all")
    for name in models:
        model = build_model(name, config).to(DEVICE).eval().to(memory_format=torch.channels_last)
        x = normalise_batch(torch.from_numpy(prepared.images[:128]).to(DEVICE).permute(0, 3, 1, 2))
        row = {}
        with torch.inference_mode():
            row["torch_fp32_b128"] = round(timed(lambda: model(x), 128, repeats), 1)
            with torch.autocast(DEVICE, dtype=torch.bfloat16):
                row["torch_bf16_b128"] = round(timed(lambda: model(x), 128, repeats), 1)
        start = time.perf_counter()
        predict_split(model, prepared, everything, batch_size=64, progress=False)
        row["predict_split_b64"] = round(len(everything) / (time.perf_counter() - start), 1)
        start = time.perf_counter()
        predict_split(model, prepared, everything, batch_size=256, progress=False)
        row["predict_split_b256"] = round(len(everything) / (time.perf_counter() - start), 1)
        if ort is not None and "CUDAExecutionProvider" in providers and DEVICE == "cuda":
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.onnx"
                torch.onnx.export(model.float().cpu(), torch.zeros(1, 3, config.img_size, config.img_size), str(path),
                                  input_names=["image"], dynamic_axes={"image": {0: "batch"}},
                                  opset_version=DEFAULT_OPSET, dynamo=False)
                session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
                row["onnx_provider"] = session.get_providers()[0]
                host = x.float().cpu().contiguous().numpy()
                session.run(None, {"image": host})
                start = time.perf_counter()
                for _ in range(10):
                    session.run(None, {"image": host})
                row["onnx_cuda_b128"] = round(1280 / (time.perf_counter() - start), 1)
        out[name] = row
    return out


def resumed_cli_run(data: Path, root: Path, log_dir: Path | None, img_size: int) -> dict:
    """``affectkit train --model resnet50`` with the spec's defaults but 2 + 2 epochs, killed (SIGKILL) once it has
    finished a phase-2 epoch, then resumed with ``--resume``."""
    run = root / "cli_run"
    command = [sys.executable, "-m", "affectkit.cli", "train", "--model", "resnet50", "--data", str(data),
               "--out", str(run), "--quiet", "--set", "epochs=2", "--set", "fine_tune_epochs=2",
               "--set", f"img_size={img_size}"]
    logs = log_dir or root
    state = run / "checkpoints" / "ResNet50"
    out = {}
    start = time.perf_counter()
    with open(logs / "cli_first.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while process.poll() is None and not (state / "phase2" / "last.ckpt").is_file():
            time.sleep(0.2)
        killed = process.poll() is None
        if killed:
            time.sleep(0.5)  # into the second phase-2 epoch
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    out["first_run"] = {"killed_in_phase2": killed, "returncode": process.returncode,
                        "seconds": round(time.perf_counter() - start, 1),
                        "phase1_done": (state / "phase1.done").is_file(),
                        "phase2_done_before_resume": (state / "phase2.done").is_file()}
    start = time.perf_counter()
    with open(logs / "cli_resume.log", "w") as log:
        resumed = subprocess.run([*command, "--resume"], stdout=log, stderr=subprocess.STDOUT)
    found = sorted(p.name for p in run.rglob("*ResNet50*"))[:20]
    out["resume"] = {"returncode": resumed.returncode, "seconds": round(time.perf_counter() - start, 1),
                     "done": (state / "done").is_file(), "files": found}
    history = run / "ResNet50_history.csv"
    if history.is_file():
        import pandas as pd

        table = pd.read_csv(history)
        out["history"] = table[[c for c in ("epoch", "phase", "val_acc", "val_loss") if c in table]].round(4).to_dict(
            "records")
    metrics = run / "ResNet50_metrics.json"
    if metrics.is_file():
        out["test_accuracy"] = json.loads(metrics.read_text())["expression"]["accuracy"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for gpu_check.json and the CLI run's logs")
    parser.add_argument("--faces", type=int, default=8000)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--models", default="resnet50,efficientnet_b0,custom_cnn")
    parser.add_argument("--batches", default="128,32")
    parser.add_argument("--phase1-epochs", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out: training, compile, "
                        "phase1, inference, cli")
    parser.add_argument("--work", type=Path, help="working folder (faces, cache, runs); faces found there are "
                        "reused (default: a temporary folder, deleted at the end)")
    parser.add_argument("--budget-s", type=float, help="start no section after this many seconds (on a leased "
                        "machine: finish, print the last line and return the files before the lease's limit)")
    parser.add_argument("--no-extras", action="store_true", help="training: no bare-PyTorch, worker-count or augment_on_device rows")
    parser.add_argument("--dry-run-on-cpu", action="store_true",
                        help="run every section on the CPU (use tiny sizes): checks this script, measures nothing")
    args = parser.parse_args()
    global DEVICE
    if args.dry_run_on_cpu:
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        print("No CUDA GPU on this machine: nothing measured (bench/gpu_check.sh measures on an NVIDIA GPU).")
        print(json.dumps({"gpu": None}))
        return 0
    if args.work:
        return measure(args, args.work)
    with tempfile.TemporaryDirectory(prefix="affectkit-gpu-") as work:  # faces, cache and runs go when it ends
        return measure(args, Path(work))


def measure(args: argparse.Namespace, root: Path) -> int:
    """Every section not skipped, with faces, cache and runs in ``root``; the results printed and in ``args.out``."""
    import affectkit
    from affectkit.config import Config
    from affectkit.data.datamodule import available_cores, loader_workers

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    results = Results(args.out / "gpu_check.json" if args.out else None, args.budget_s)
    skip = set(filter(None, args.skip.split(",")))
    models = args.models.split(",")
    root.mkdir(parents=True, exist_ok=True)
    os.environ["AFFECTKIT_CACHE"] = str(root / "cache")  # the CLI run reuses the pixel cache built here
    config = Config(img_size=args.img_size, seed=0, tensorboard=False)
    cores = available_cores()
    props = torch.cuda.get_device_properties(0) if DEVICE == "cuda" else None
    results.update({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "gpu": props.name if props else "none (dry run)",
        "gpu_memory_gib": round(props.total_memory / 2**30, 1) if props else 0, "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cores": cores, "loader_workers_auto": loader_workers(config), "img_size": args.img_size,
        "affectkit_sources": str(Path(affectkit.__file__).parent),
    })
    print(json.dumps(results), flush=True)
    results.section("bf16_matmul_tflops", lambda: round(matmul_tflops(), 1))
    data, prepared, facts = make_data(root, args.faces, args.img_size, config)
    results["data"] = facts
    print(json.dumps(facts), flush=True)
    flops = results.section("resnet50_train_gflop_per_image",
                            lambda: round(training_flops_per_image("resnet50", config) / 1e9, 2))
    if "training" not in skip:
        speeds = results.section("training", training_speeds, config, prepared, models,
                                 [int(b) for b in args.batches.split(",")], max(1, cores - 1), not args.no_extras,
                                 (2, 4) if args.dry_run_on_cpu else None)
        resnet = speeds.get("resnet50@128", {}) if isinstance(speeds, dict) else {}
        if isinstance(flops, float) and "gpu_resident" in resnet:
            achieved = flops * resnet["gpu_resident"]["images_per_s"] / 1e3  # TFLOP/s
            results["resnet50_fraction_of_peak"] = {
                "achieved_tflops": round(achieved, 1), "datasheet_bf16_dense_tflops": H200_BF16_DENSE_TFLOPS,
                "of_datasheet": round(achieved / H200_BF16_DENSE_TFLOPS, 3),
                "of_measured_matmul": round(achieved / results["bf16_matmul_tflops"], 3)
                if isinstance(results["bf16_matmul_tflops"], float) else None}
    if "cli" not in skip:
        results.section("cli_run", resumed_cli_run, data, root, args.out, args.img_size)
    if "phase1" not in skip:
        results.section("phase1", phase1_comparison, config, prepared, root / "phase1", args.phase1_epochs)
    if "inference" not in skip:
        results.section("inference", inference_speeds, config, prepared, models, 1 if args.dry_run_on_cpu else 10)
    if "compile" not in skip:
        results.section("compile", compile_speeds, config, prepared, ["resnet50", "custom_cnn"])
    print("GPU_CHECK " + json.dumps(results, default=float, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
