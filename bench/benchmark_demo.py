"""`affectkit benchmark` on rendered demo faces saved as class folders, the way a user's own set arrives: the classic
baselines (HOG + linear SVM, linear probes on frozen ImageNet and FER2013 features) against the recommended recipe.
With ``--valence-arousal-only`` the faces come as a manifest of path, valence and arousal (no class, as AFEW-VA's):
every row is then a valence/arousal model, scored by CCC.

    python bench/benchmark_demo.py                 # 1,600 faces rendered at 112 px; about 10 minutes on 2 idle cores
    python bench/benchmark_demo.py --n 4000
    python bench/benchmark_demo.py --n 7000 --set validation_split=0.075 --set test_split=0.425   # 3,500 to train on
    python bench/benchmark_demo.py --n 1200 --valence-arousal-only --out bench/results/benchmark_demo_va_only.md

Copies the run's benchmark.md to bench/results/benchmark_demo.md; the last line is machine-readable.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from affectkit.config import CLASS_NAMES, parse_set_options
from affectkit.data.synthetic import make_demo_dataset
from affectkit.pipeline.benchmark import benchmark_config, run_benchmark

from threads import add_threads_option, use_threads


def demo_class_folders(root: Path, n: int, seed: int) -> Path:
    """Render ``n`` faces and file them as ``root/folders/<class>/<id>.jpg`` (no annotations: expression only)."""
    rendered = make_demo_dataset(root / "rendered", n=n, seed=seed, img_size=112, progress=False)
    folders = root / "folders"
    for image in (rendered / "images").glob("*.jpg"):
        label = int(np.load(rendered / "annotations" / f"{image.stem}_exp.npy"))
        target = folders / CLASS_NAMES[label].lower()
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, target / image.name)
    return folders


def demo_valence_arousal_manifest(root: Path, n: int, seed: int) -> Path:
    """Render ``n`` faces and list them in ``root/faces.csv`` with their valence and arousal, without a class."""
    rendered = make_demo_dataset(root / "rendered", n=n, seed=seed, img_size=112, progress=False)
    rows = [{"path": str(image), "valence": float(np.load(rendered / "annotations" / f"{image.stem}_val.npy")),
             "arousal": float(np.load(rendered / "annotations" / f"{image.stem}_aro.npy"))}
            for image in sorted((rendered / "images").glob("*.jpg"))]
    pd.DataFrame(rows).to_csv(root / "faces.csv", index=False)
    return root / "faces.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1600)
    parser.add_argument("--seed", type=int, default=1, help="render seed (the demo itself uses 0)")
    parser.add_argument("--valence-arousal-only", action="store_true",
                        help="a manifest of path, valence, arousal (no class) instead of class folders")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config key on top of the recipe, as `affectkit benchmark --set` takes it (repeatable)")
    add_threads_option(parser)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "benchmark_demo.md")
    args = parser.parse_args()
    use_threads(args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="affectkit-benchmark-") as tmp:
        make_data = demo_valence_arousal_manifest if args.valence_arousal_only else demo_class_folders
        data = make_data(Path(tmp), args.n, args.seed)
        result = run_benchmark(data, Path(tmp) / "run", benchmark_config(data=data, sets=parse_set_options(args.set)),
                               quiet=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(result.paths["markdown"], args.out)
    table = result.table
    if args.valence_arousal_only:
        print(table.set_index("model")[["valence_ccc", "arousal_ccc"]].to_string())
        best = {kind: table.loc[table["kind"] == kind, ["valence_ccc", "arousal_ccc"]].max() for kind in
                ("recipe", "baseline")}
        print(f"wrote {args.out} in {time.perf_counter() - start:.0f}s")
        print(" ".join(f"{kind}_{dim}={best[kind][dim]:.4f}" for kind in best for dim in ("valence_ccc", "arousal_ccc")))
        return
    print(table.set_index("model")[["accuracy", "macro_f1"]].to_string())
    accuracy = {kind: table.loc[table["kind"] == kind, "accuracy"].max() for kind in ("recipe", "fusion", "baseline")}
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f}s")
    print(f"recipe_accuracy={accuracy['recipe']:.4f} fusion_accuracy={accuracy['fusion']:.4f} "
          f"best_baseline_accuracy={accuracy['baseline']:.4f}")


if __name__ == "__main__":
    main()
