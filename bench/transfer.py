"""What the shipped ImageNet weights are worth: each light backbone trained from its ImageNet start and from a random
start, same data, same split, same recipe and epochs (phase 1 frozen, phase 2 fine-tuned), through the product.

    python bench/transfer.py                     # the demo faces and the demo profile, about 5 minutes on 2 cores
    python bench/transfer.py --data DIR --set img_size=96 --set fine_tune_epochs=10

Prints test accuracy, macro-F1, valence/arousal CCC and training time per run, writes bench/results/transfer.md;
the last line is machine-readable.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd
import torch

from affectkit.config import Config, parse_set_options
from affectkit.data.datamodule import prepare_data
from affectkit.data.synthetic import DEMO_PROFILE, make_demo_dataset
from affectkit.evaluation.comparison import markdown_table
from affectkit.evaluation.evaluator import predict_split, score
from affectkit.models import load_model
from affectkit.training.trainer import train_model

from threads import add_threads_option, use_threads

MODELS = ("resnet50", "efficientnet_b0")  # their light stand-ins: MobileNetV2, EfficientNet-Lite0


def run_one(name: str, pretrained: bool, data, out: Path, config: Config) -> dict:
    result = train_model(name, data, out, config, pretrained=pretrained, quiet=True)
    model, meta = load_model(result.best_path)
    test = data.positions("test")
    metrics = score(predict_split(model, data, test, progress=False), data, test)
    history = result.history
    phase1_best = history.loc[history.phase == 1, "val_acc"].max()
    phase2_best = history.loc[history.phase == 2, "val_acc"].max()
    return {
        "model": result.name, "backbone": meta["backbone"], "start": "ImageNet" if pretrained else "random",
        "test_accuracy": metrics["expression"]["accuracy"], "macro_f1": metrics["expression"]["macro_f1"],
        "valence_ccc": metrics["valence"]["ccc"] if metrics.get("valence") else float("nan"),
        "arousal_ccc": metrics["arousal"]["ccc"] if metrics.get("arousal") else float("nan"),
        "val_acc_phase1": phase1_best, "val_acc_phase2": phase2_best, "train_time_s": round(result.train_time_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="any supported data folder (default: rendered demo faces)")
    parser.add_argument("--n", type=int, default=1200, help="demo faces to render when --data is not given")
    parser.add_argument("--set", action="append", default=[], help="config overrides on the demo profile, KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "transfer.md")
    add_threads_option(parser)
    args = parser.parse_args()
    use_threads(args)
    config = Config(**{**DEMO_PROFILE, "use_light_models": True}).override(**parse_set_options(args.set))
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="affectkit-transfer-") as tmp:
        root = args.data or make_demo_dataset(Path(tmp) / "demo", n=args.n, seed=0, progress=False)
        data = prepare_data(root, config, splits_path=Path(tmp) / "splits.csv", progress=False)
        for name in MODELS:
            for pretrained in (True, False):
                row = run_one(name, pretrained, data, Path(tmp) / f"{name}-{pretrained}", config)
                rows.append(row)
                print(f"{row['model']} ({row['backbone']}) from a {row['start']} start: test accuracy "
                      f"{row['test_accuracy']:.3f}, macro-F1 {row['macro_f1']:.3f}, CCC valence {row['valence_ccc']:.3f} "
                      f"arousal {row['arousal_ccc']:.3f}, best val acc phase 1 {row['val_acc_phase1']:.3f} -> phase 2 "
                      f"{row['val_acc_phase2']:.3f}, {row['train_time_s']:.0f}s", flush=True)
    table = pd.DataFrame(rows)
    source = str(args.data) if args.data else f"{args.n} rendered demo faces (seed 0)"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        f"# Transfer: ImageNet start vs random start\n\n"
        f"`python bench/transfer.py {' '.join(f'--set {s}' for s in args.set)}`, {date.today()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads. Data: {source}; split 70/15/15 stratified, the same "
        f"for every run. Recipe: the demo profile with light models (img_size {config.img_size}, phase 1 "
        f"{config.epochs} epochs frozen, phase 2 {config.fine_tune_epochs} epochs fine-tuned, {config.lr_schedule} "
        f"schedule). Test split touched once per run, after selection on validation.\n\n"
        + markdown_table(table) + "\n")
    gains = {r["model"]: r["test_accuracy"] for r in rows if r["start"] == "ImageNet"}
    for r in rows:
        if r["start"] == "random":
            gains[r["model"]] -= r["test_accuracy"]
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f}s")
    print(" ".join(f"{k}_imagenet_gain={v:.4f}" for k, v in gains.items()))


if __name__ == "__main__":
    main()
