"""What each opt-in "future improvement" does for the custom CNN, one option at a time against a baseline.

Every run trains the custom CNN from the same seed on the same split for the same number of epochs (early stopping
is off so no option gets a shorter budget), then scores its best-validation-loss model on the test split. The
class-balancing options (focal loss, class-weighted CE, weighted sampler) and a baseline run again on an imbalanced
demo set (AffectNet-like skew), where macro-F1 is the number to read.

One seed and a small test split: differences of a few points are noise, not evidence.

    python bench/ablations.py                       # 15 runs; 27 min measured on a shared, loaded 2-core box
    python bench/ablations.py --quick               # smoke run, under a minute
    python bench/ablations.py --n 1600 --img-size 64 --epochs 30 --out results/

Writes ablations.md (rewritten after every run, so a killed bench keeps its finished rows).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from affectkit.config import Config
from affectkit.data.datamodule import PreparedData, prepare_data
from affectkit.data.synthetic import make_demo_dataset
from affectkit.evaluation.evaluator import predict_split, score
from affectkit.models import load_model
from affectkit.training.trainer import train_model

BALANCING = ("focal loss (gamma 2)", "class-weighted CE", "weighted sampler")
OPTIONS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "mixup (alpha 0.2)": {"augmentation.mixup_alpha": 0.2},
    "cutmix (alpha 1.0)": {"augmentation.cutmix_alpha": 1.0},
    "RandAugment (rand-m9-mstd0.5)": {"augmentation.rand_augment": "rand-m9-mstd0.5"},
    "TrivialAugment": {"augmentation.trivial_augment": True},
    "focal loss (gamma 2)": {"loss.focal_gamma": 2.0},
    "class-weighted CE": {"loss.class_weighting": True},
    "weighted sampler": {"weighted_sampler": True},
    "CCC regression loss": {"loss.regression": "ccc"},
    "SE attention": {"attention": "se"},
    "CBAM attention": {"attention": "cbam"},
}
COLUMNS = ("option", "data", "accuracy", "macro-F1", "valence CCC", "arousal CCC", "training time (s)")
# The renderer's fine strokes (wrinkles, lids) need some pixels; the image cache then resizes to --img-size.
MIN_RENDER_SIZE = 64

# Two OpenMP threads on a 2-core machine that others share measured up to 15x slower than one (1.8-26 s per training
# epoch against a steady 2.7 s; 150 ms against 1 ms per batch-1 forward): every op waits for a descheduled peer.
THREADS_HELP = "PyTorch threads (1 is steady on a shared machine; raise it on an idle one)"


@dataclass(frozen=True)
class Settings:
    n: int
    img_size: int
    epochs: int
    seed: int


def quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers|litlogger).*")


def base_config(settings: Settings, cache_dir: Path) -> Config:
    return Config(img_size=settings.img_size, batch_size=32, epochs=settings.epochs, fine_tune_epochs=0,
                  early_stopping_patience=max(settings.epochs, 1), num_workers=0, seed=settings.seed,
                  cache_dir=str(cache_dir))


def demo_data(root: Path, settings: Settings, imbalance: bool, config: Config) -> PreparedData:
    """Render the demo set and split it once; every run on it shares ``splits.csv``."""
    folder = root / ("imbalanced" if imbalance else "balanced")
    make_demo_dataset(folder / "data", n=settings.n, seed=settings.seed,
                      img_size=max(settings.img_size, MIN_RENDER_SIZE), imbalance=imbalance, progress=False)
    return prepare_data(folder / "data", config, splits_path=folder / "splits.csv", progress=False)


def run_option(option: str, data: PreparedData, run_dir: Path, config: Config) -> dict[str, Any]:
    result = train_model("custom_cnn", data, run_dir, config.override(**OPTIONS[option]), quiet=True)
    model, _ = load_model(result.best_path)
    test = data.positions("test")
    metrics = score(predict_split(model, data, test, progress=False), data, test)
    return {"accuracy": metrics["expression"]["accuracy"], "macro-F1": metrics["expression"]["macro_f1"],
            "valence CCC": metrics["valence"]["ccc"], "arousal CCC": metrics["arousal"]["ccc"],
            "training time (s)": result.train_time_s}


def markdown(rows: list[dict[str, Any]], settings: Settings, sizes: dict[str, dict[str, int]], elapsed: float) -> str:
    split = "; ".join(f"{kind}: {', '.join(f'{k} {v}' for k, v in counts.items())}" for kind, counts in sizes.items())
    lines = [
        "# Ablations: custom CNN, one option at a time",
        "",
        f"{settings.n} demo faces per data set at {settings.img_size}x{settings.img_size}, {settings.epochs} epochs, "
        f"seed {settings.seed}, batch 32, early stopping off, {torch.get_num_threads()} PyTorch thread(s); split "
        f"sizes {split}. Scores on the test split with the best-validation-loss epoch. One seed and a small test "
        f"split: a few points either way is noise. Bench wall time {elapsed / 60:.1f} min.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(COLUMNS) - 2)) + "|",
    ]
    for row in rows:
        cells = [row["option"], row["data"], *(f"{row[c]:.3f}" for c in COLUMNS[2:-1]), f"{row[COLUMNS[-1]]:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plan(quick: bool) -> list[tuple[str, bool]]:
    """(option, imbalanced) pairs: every option on balanced data, the balancing ones again on the skewed set."""
    if quick:
        return [("baseline", False), ("mixup (alpha 0.2)", False), ("baseline", True), ("weighted sampler", True)]
    return [(option, False) for option in OPTIONS] + [(option, True) for option in ("baseline", *BALANCING)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="demo faces per data set")
    parser.add_argument("--img-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: 160 faces, 32 px, 2 epochs, 4 runs")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for ablations.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes_and_epochs = (160, 32, 2) if args.quick else (args.n, args.img_size, args.epochs)
    settings = Settings(*sizes_and_epochs, args.seed)
    quiet_lightning()
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / "ablations.md"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="affectkit-ablations-") as tmp:
        root = Path(tmp)
        config = base_config(settings, root / "cache")
        datasets = {kind: demo_data(root, settings, kind == "imbalanced", config)
                    for kind in ("balanced", "imbalanced")}
        sizes = {kind: d.splits["split"].value_counts().to_dict() for kind, d in datasets.items()}
        rows: list[dict[str, Any]] = []
        for i, (option, imbalanced) in enumerate(plan(args.quick)):
            kind = "imbalanced" if imbalanced else "balanced"
            row = {"option": option, "data": kind,
                   **run_option(option, datasets[kind], root / "runs" / f"{i:02d}", config)}
            rows.append(row)
            print(f"{option:32s} {kind:10s} acc {row['accuracy']:.3f}  macro-F1 {row['macro-F1']:.3f}  "
                  f"CCC v {row['valence CCC']:.3f} a {row['arousal CCC']:.3f}  {row['training time (s)']:.0f}s",
                  flush=True)
            report.write_text(markdown(rows, settings, sizes, time.perf_counter() - start))
    print(f"Wrote {report} ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
