"""The recipe's two networks on a small demo set: MobileNetV2 from ImageNet, MiniXception from FER2013, and the two
fused by one weight chosen on val (what `affectkit benchmark`'s recipe row is), over several render seeds.

Also the FER2013 network's zero-shot accuracy on the test faces (its own 7-way head, Contempt left out, no
training on these faces at all): how much expression knowledge it brings before any fine-tuning.

    python bench/recipe_networks.py --n 1000 --seed 0 --seed 1 --threads 2 --out results/

Settings: configs/recommended.yaml (faces rendered at 112 px) with early stopping off, as in
bench/ablations.py --recipe.
Writes recipe_networks.md (rewritten after every seed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from affectkit.data.datamodule import PreparedData, normalise_batch
from affectkit.evaluation.calibration import calibrate
from affectkit.evaluation.ensemble import fit_late_fusion
from affectkit.evaluation.evaluator import predict_split, score
from affectkit.models import load_model
from affectkit.models.mini_xception import FER2013_TO_AFFECTKIT, MiniXception, read_keras_weights
from affectkit.models.registry import REGISTRY, shipped_file
from affectkit.training.trainer import train_model

from ablations import Settings, demo_data, quiet_lightning, recipe_config
from threads import add_threads_option, use_threads

NETWORKS = {"resnet50": "MobileNetV2 (ImageNet)", "mini_xception": "MiniXception (FER2013)"}
CONTEMPT = 7


def zero_shot_accuracy(data: PreparedData) -> float:
    """The shipped FER2013 network as it is, on the test faces it has a class for."""
    network = MiniXception(data.images.shape[1], num_classes=len(FER2013_TO_AFFECTKIT))
    network.load_state_dict(read_keras_weights(shipped_file(REGISTRY["mini_xception"]), network.state_dict()),
                            strict=False)
    test = data.positions("test")
    test = test[data.expression[test] != CONTEMPT]
    images = normalise_batch(torch.from_numpy(np.asarray(data.images[test])).permute(0, 3, 1, 2), channels_last=False)
    with torch.no_grad():
        logits = network.eval()(images)
    predicted = np.asarray(FER2013_TO_AFFECTKIT)[logits.argmax(1).numpy()]
    return float((predicted == data.expression[test]).mean())


def run_seed(root: Path, settings: Settings) -> dict:
    config = recipe_config(settings, root / "cache", quick=False)
    data = demo_data(root, settings, imbalance=False, config=config)
    val, test = data.positions("val"), data.positions("test")
    row, probs = {"seed": settings.seed, "zero-shot": zero_shot_accuracy(data)}, {}
    for key, name in NETWORKS.items():
        result = train_model(key, data, root / "runs" / key, config, pretrained=True, quiet=True)
        model, _ = load_model(result.best_path)
        val_pred = predict_split(model, data, val, progress=False, tta_flip=config.tta_flip)
        temperature = calibrate(result.best_path, val_pred, data.expression[val])
        test_pred = predict_split(model, data, test, progress=False, tta_flip=config.tta_flip, temperature=temperature)
        probs[key] = (val_pred.tempered(temperature).probs, test_pred.probs)
        row[name] = score(test_pred, data, test)["expression"]["accuracy"]
        row[f"{name} time"] = result.train_time_s
    (val_first, test_first), (val_second, test_second) = probs.values()
    fusion = fit_late_fusion(val_first, val_second, data.expression[val])
    row["weight"] = fusion.weight
    row["fused"] = float((fusion.apply(test_first, test_second).argmax(1) == data.expression[test]).mean())
    row["sizes"] = data.splits["split"].value_counts().to_dict()
    return row


def markdown(rows: list[dict], n: int, elapsed: float) -> str:
    sizes = ", ".join(f"{k} {v}" for k, v in rows[0]["sizes"].items())
    names = list(NETWORKS.values())
    lines = [
        "# The recipe's two networks and their fusion",
        "",
        f"`bench/recipe_networks.py`: {n} demo faces per seed (split {sizes}), configs/recommended.yaml "
        "(faces rendered at 112 px), "
        f"early stopping off, {torch.get_num_threads()} PyTorch thread(s), bench wall time {elapsed / 60:.1f} min. "
        "Test accuracy of the model each run selected on validation; the fusion weight (on MiniXception's "
        "log-probabilities) is chosen on val by log-loss. Zero-shot: the shipped FER2013 network's own head on the "
        "test faces of its 7 classes, before any training.",
        "",
        "| seed | FER2013 zero-shot | " + " | ".join(names) + " | fusion weight | fused (the recipe) | training time (s) |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        times = " / ".join(f"{row[f'{name} time']:.0f}" for name in names)
        lines.append(f"| {row['seed']} | {row['zero-shot']:.3f} | " + " | ".join(f"{row[name]:.3f}" for name in names)
                     + f" | {row['weight']:g} | {row['fused']:.3f} | {times} |")
    means = [np.mean([row[k] for row in rows]) for k in ("zero-shot", *names, "fused")]
    lines.append(f"| mean | {means[0]:.3f} | " + " | ".join(f"{m:.3f}" for m in means[1:-1]) + f" | | {means[-1]:.3f} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="demo faces per seed")
    parser.add_argument("--seed", type=int, action="append", help="render and training seed (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for recipe_networks.md")
    add_threads_option(parser)
    args = parser.parse_args()
    use_threads(args)
    quiet_lightning()
    args.out.mkdir(parents=True, exist_ok=True)
    report, rows, start = args.out / "recipe_networks.md", [], time.perf_counter()
    for seed in args.seed or [0]:
        with tempfile.TemporaryDirectory(prefix="affectkit-recipe-networks-") as tmp:
            rows.append(run_seed(Path(tmp), Settings(args.n, 112, 0, seed)))
        print({k: v for k, v in rows[-1].items() if k != "sizes"}, flush=True)
        report.write_text(markdown(rows, args.n, time.perf_counter() - start))
    print(f"Wrote {report}")


if __name__ == "__main__":
    main()
