"""Phase 2 with and without the fine-tuning fix: the validation history around the moment the pretrained backbone
is unfrozen, for MobileNetV2 from its shipped ImageNet weights on the demo faces (demo profile, light models).

"as before" is the fine-tuning of earlier affectkit releases: phase 2 starts at fine_tune_lr at once and BatchNorm
switches to batch statistics; "fixed" warms the learning rate up over the first epoch and keeps the pretrained
BatchNorm statistics (the defaults).

    python bench/fine_tuning.py          # about 2 minutes on 2 cores

Writes bench/results/fine_tuning.md; the last line is machine-readable.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd
import torch

from affectkit.config import Config
from affectkit.data.datamodule import prepare_data
from affectkit.data.synthetic import DEMO_PROFILE, make_demo_dataset
from affectkit.training.trainer import train_model

from threads import add_threads_option, use_threads

VARIANTS = {
    "as before (no warm-up, BatchNorm trained)": {"fine_tune_warmup_epochs": 0.0, "fine_tune_batchnorm": "train"},
    "BatchNorm statistics frozen only": {"fine_tune_warmup_epochs": 0.0},
    "fixed (warm-up + frozen BatchNorm statistics)": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=20, help="phase-1 epochs (stored features)")
    parser.add_argument("--fine-tune-epochs", type=int, default=6)
    add_threads_option(parser)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fine_tuning.md")
    args = parser.parse_args()
    use_threads(args)
    start = time.perf_counter()
    base = Config(**{**DEMO_PROFILE, "use_light_models": True, "epochs": args.epochs,
                     "fine_tune_epochs": args.fine_tune_epochs})
    columns = {}
    with tempfile.TemporaryDirectory(prefix="affectkit-finetune-") as tmp:
        root = make_demo_dataset(Path(tmp) / "demo", n=args.n, seed=0, progress=False)
        data = prepare_data(root, base, splits_path=Path(tmp) / "splits.csv", progress=False)
        for label, changes in VARIANTS.items():
            history = train_model("resnet50", data, Path(tmp) / label[:8], base.override(**changes),
                                  pretrained=True, quiet=True).history
            last_phase1 = history[history.phase == 1].tail(1)
            shown = pd.concat([last_phase1, history[history.phase == 2]])
            columns[label] = shown.set_index("epoch")["val_acc"].round(3)
            print(f"{label}: validation accuracy {' '.join(f'{v:.3f}' for v in columns[label])}", flush=True)
    table = pd.DataFrame(columns)
    table.index = [f"phase 1, last epoch ({i})" if n == 0 else f"phase 2, epoch {n}"
                   for n, i in enumerate(table.index)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        f"# Phase 2: fine-tuning with and without the fix\n\n`python bench/fine_tuning.py`, {date.today()}, torch "
        f"{torch.__version__}. MobileNetV2 from its shipped ImageNet weights, {args.n} demo faces (70/15/15 split), "
        f"demo profile at {base.img_size} px, phase 1 {args.epochs} epochs frozen (stored features), phase 2 "
        f"{args.fine_tune_epochs} epochs at fine_tune_lr {base.fine_tune_lr:g}, cosine. Validation accuracy per "
        f"epoch (the model kept is chosen on validation loss):\n\n| epoch | "
        + " | ".join(table.columns) + " |\n|---|" + "---:|" * len(table.columns) + "\n"
        + "\n".join(f"| {idx} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for idx, row in table.iterrows())
        + "\n")
    first = table.iloc[1]
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f}s")
    print(" ".join(f"first_fine_tune_epoch_{i}={v:.4f}" for i, v in enumerate(first)))


if __name__ == "__main__":
    main()
