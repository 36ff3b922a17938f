"""What the export benches share (run them as ``python bench/<name>.py``): a run folder's saved models, each copied
into a folder of its own so that its exports are written beside the copy, not into the run."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="run folder: best_<Model>.safetensors, splits.csv")
    parser.add_argument("--data", type=Path, required=True, help="the data set the run was trained on")
    parser.add_argument("--splits", type=Path, help="default: the run's splits.csv")
    parser.add_argument("--models", default="MobileNetV2,CustomCNN", help="names of its best_<name>.safetensors")


def copied_models(args: argparse.Namespace) -> Iterator[tuple[Path, Path]]:
    """(the copy of each model ``--models`` names, the run's splits.csv), the copies deleted once all are measured."""
    splits = args.splits or args.run / "splits.csv"
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            weights = args.run / f"best_{name}.safetensors"
            if not weights.is_file():
                held = ", ".join(sorted(p.stem.removeprefix("best_") for p in args.run.glob("best_*.safetensors")))
                raise SystemExit(f"{weights} not found: --models names the run's best_<name>.safetensors ({held}).")
            work = Path(tmp) / name
            work.mkdir()
            for path in (weights, weights.with_suffix(".json")):
                shutil.copy(path, work / path.name)
            yield work / weights.name, splits
