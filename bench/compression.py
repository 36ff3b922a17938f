"""Smaller custom CNNs: magnitude pruning and int8 quantisation against fp32, on disk, in time and in accuracy.

Trains the custom CNN on demo data (or --data), then compares:

* PyTorch fp32 (the trained model);
* pruned 50 % and 80 % (global L1, unstructured), each fine-tuned for --fine-tune-epochs with the masks kept so the
  pruned weights stay zero, then made permanent;
* ONNX fp32 and ONNX int8 (dynamic quantisation of the dense layers, see affectkit.inference.export), and the 80 %
  pruned model as ONNX int8.

Sizes are of the files as saved and gzip-compressed: unstructured zeros only shrink a compressed file. Latency is the
median wall time per image over repeated batches of 1 and of 32 on this machine's CPU, PyTorch rows in PyTorch and
ONNX rows in onnxruntime, with the same thread count.

    python bench/compression.py                     # under 2 minutes on 2 cores (measured 1.8 min)
    python bench/compression.py --data DIR --img-size 64 --epochs 30 --out results/

Writes compression.md.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from affectkit.config import Config
from affectkit.data.datamodule import AffectDataModule, PreparedData, normalise, normalise_batch, prepare_data
from affectkit.data.synthetic import make_demo_dataset
from affectkit.evaluation.evaluator import Predictions, predict_split, score
from affectkit.inference.backends import OnnxBackend
from affectkit.inference.export import export_onnx, int8_path
from affectkit.models import load_model, save_model
from affectkit.models.compression import apply_pruning, make_permanent, sparsity
from affectkit.models.factory import AffectModel
from affectkit.training.losses import multitask_loss
from affectkit.training.trainer import train_model

PRUNE_AMOUNTS = (0.5, 0.8)
MIN_RENDER_SIZE = 64  # the renderer's fine strokes need some pixels; the image cache resizes to --img-size
COLUMNS = ("variant", "size (MB)", "gzip (MB)", "ms/image, batch 1", "ms/image, batch 32", "test accuracy",
           "accuracy before fine-tune", "sparsity")

# Two OpenMP threads on a 2-core machine that others share measured up to 15x slower than one (1.8-26 s per training
# epoch against a steady 2.7 s; 150 ms against 1 ms per batch-1 forward): every op waits for a descheduled peer.
THREADS_HELP = "PyTorch and onnxruntime threads (1 is steady on a shared machine; raise it on an idle one)"


@dataclass
class Row:
    variant: str
    path: Path
    latency_1: float
    latency_32: float
    accuracy: float
    sparsity: float
    accuracy_before: float | None = None

    def cells(self) -> list[str]:
        before = f"{self.accuracy_before:.3f}" if self.accuracy_before is not None else ""
        return [self.variant, f"{mb(self.path.stat().st_size):.3f}", f"{mb(gzip_size(self.path)):.3f}",
                f"{self.latency_1:.2f}", f"{self.latency_32:.2f}", f"{self.accuracy:.3f}", before,
                f"{self.sparsity:.1%}"]


def mb(n_bytes: int) -> float:
    return n_bytes / 2**20


def gzip_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=6))


def median_ms_per_image(run: Callable[[], object], batch: int, repeats: int) -> float:
    for _ in range(2):  # warm-up: allocator and kernel selection
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    # The median shrugs off the spikes of a shared machine.
    return statistics.median(times) / batch * 1000


def random_batch(batch: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)


@torch.inference_mode()
def torch_latency(model: torch.nn.Module, size: int, batch: int, repeats: int) -> float:
    model.eval().to(memory_format=torch.channels_last)
    x = torch.from_numpy(random_batch(batch, size)).contiguous(memory_format=torch.channels_last)
    return median_ms_per_image(lambda: model(x), batch, repeats)


def onnx_latency(backend: OnnxBackend, size: int, batch: int, repeats: int) -> float:
    x = random_batch(batch, size)
    return median_ms_per_image(lambda: backend(x), batch, repeats)


def torch_accuracy(model: torch.nn.Module, data: PreparedData) -> float:
    test = data.positions("test")
    return score(predict_split(model, data, test, progress=False), data, test)["expression"]["accuracy"]


def onnx_accuracy(backend: OnnxBackend, data: PreparedData, batch: int = 64) -> float:
    test = data.positions("test")
    logits, va = [], []
    for start in range(0, len(test), batch):
        out_logits, valence, arousal = backend(normalise(np.asarray(data.images[test[start:start + batch]])))
        logits.append(out_logits)
        va.append(np.stack([valence, arousal], 1))
    pred = Predictions(np.concatenate(logits), np.concatenate(va))
    return score(pred, data, test)["expression"]["accuracy"]


def fine_tune(model: AffectModel, data: PreparedData, config: Config, epochs: int) -> None:
    """A plain loop: the pruning masks stay attached, so the pruned weights get no update and stay zero."""
    loader = AffectDataModule(data, config).train_dataloader()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.fine_tune_lr)
    model.train().to(memory_format=torch.channels_last)
    for _ in range(epochs):
        for images, labels, va, _ in loader:
            logits, valence, arousal = model(normalise_batch(images))
            loss, _ = multitask_loss(logits, valence, arousal, labels, va, config.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def pruned_row(amount: float, best: Path, data: PreparedData, config: Config, epochs: int, out: Path,
               repeats: tuple[int, int]) -> Row:
    model, _ = load_model(best)
    apply_pruning(model, amount)
    before = torch_accuracy(model, data)
    fine_tune(model, data, config, epochs)
    make_permanent(model)
    path = save_model(model, out / f"pruned{int(amount * 100)}", config, extra={"pruned": amount})
    return Row(f"PyTorch pruned {amount:.0%} + {epochs} ep fine-tune", path,
               torch_latency(model, config.img_size, 1, repeats[0]),
               torch_latency(model, config.img_size, 32, repeats[1]),
               torch_accuracy(model, data), sparsity(model), before)


def onnx_row(variant: str, path: Path, source: AffectModel, data: PreparedData, size: int,
             repeats: tuple[int, int]) -> Row:
    backend = OnnxBackend(path, threads=torch.get_num_threads())
    return Row(variant, path, onnx_latency(backend, size, 1, repeats[0]), onnx_latency(backend, size, 32, repeats[1]),
               onnx_accuracy(backend, data), sparsity(source))


def markdown(rows: list[Row], settings: str) -> str:
    lines = ["# Compression: custom CNN", "", settings, "",
             "| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="AffectNet-layout folder to use instead of generated demo faces")
    parser.add_argument("--n", type=int, default=800, help="demo faces to generate")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 160 faces, 32 px, 2 epochs")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for compression.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.img_size, args.epochs, args.fine_tune_epochs = 160, 32, 2, 1
    repeats = (5, 2) if args.quick else (30, 5)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers|litlogger).*")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="affectkit-compression-") as tmp:
        work = Path(tmp)
        config = Config(img_size=args.img_size, batch_size=32, epochs=args.epochs, fine_tune_epochs=0,
                        early_stopping_patience=max(args.epochs, 1), num_workers=0, seed=args.seed,
                        cache_dir=str(work / "cache"))
        source = args.data or make_demo_dataset(work / "data", n=args.n, seed=args.seed,
                                                img_size=max(args.img_size, MIN_RENDER_SIZE), progress=False)
        data = prepare_data(source, config, splits_path=work / "splits.csv", progress=False)
        trained = train_model("custom_cnn", data, work / "run", config, quiet=True)
        model, _ = load_model(trained.best_path)
        size = config.img_size
        rows = [Row("PyTorch fp32", trained.best_path, torch_latency(model, size, 1, repeats[0]),
                    torch_latency(model, size, 32, repeats[1]), torch_accuracy(model, data), sparsity(model))]
        rows += [pruned_row(a, trained.best_path, data, config, args.fine_tune_epochs, work, repeats)
                 for a in PRUNE_AMOUNTS]
        fp32_onnx = export_onnx(trained.best_path, work / "model.onnx", int8=True)
        rows.append(onnx_row("ONNX fp32", fp32_onnx, model, data, size, repeats))
        rows.append(onnx_row("ONNX int8 (dense layers)", int8_path(fp32_onnx), model, data, size, repeats))
        pruned80 = work / f"pruned{int(PRUNE_AMOUNTS[-1] * 100)}.safetensors"
        pruned_onnx = export_onnx(pruned80, work / "pruned.onnx", int8=True)
        rows.append(onnx_row(f"pruned {PRUNE_AMOUNTS[-1]:.0%} + ONNX int8", int8_path(pruned_onnx),
                             load_model(pruned80)[0], data, size, repeats))
        counts = data.splits["split"].value_counts().to_dict()
        settings = (f"Custom CNN, {len(data.records)} {'faces from ' + str(args.data) if args.data else 'demo faces'} "
                    f"at {size}x{size} (split {counts}), trained {args.epochs} epochs (seed {args.seed}); "
                    f"{torch.get_num_threads()} CPU thread(s) for PyTorch and onnxruntime. Test accuracy on "
                    f"{counts.get('test', 0)} images. Bench wall time {(time.perf_counter() - start) / 60:.1f} min.")
        text = markdown(rows, settings)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compression.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
