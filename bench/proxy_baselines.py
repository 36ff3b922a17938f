"""The classic baselines `affectkit benchmark` reports (HOG + linear SVM, linear probes on frozen ImageNet and FER2013
features), on one of the proxy sets the recipe studies use, label noise included: where the recipe's networks stand
against them on the same faces and split (`selection.py`, `fusion_rules.py` and `ablations.py --recipe` render the
same sets for the same seed).

    python bench/proxy_baselines.py --data hard --seed 0 --threads 2
    python bench/proxy_baselines.py --data hard --seed 0 --threads 2 --probe-size 96   # probes at the recipe's size
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sklearn.metrics import accuracy_score, f1_score

from affectkit.evaluation.baselines import PROBE_MODELS, BaselineTask, hog_svm, linear_probe

from ablations import quiet_lightning
from selection import markdown_table, proxy_parser, proxy_set
from threads import use_threads


def main() -> None:
    parser = proxy_parser(__doc__.split("\n\n")[0], "hard")
    parser.add_argument("--probe-size", type=int, help="linear probes at this size instead of their weights' own")
    args = parser.parse_args()
    use_threads(args)
    quiet_lightning()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="affectkit-proxy-baselines-") as tmp:
        recipe, data = proxy_set(args.data, args.seed, Path(tmp))
        task = BaselineTask.from_prepared(data, seed=args.seed, cache_dir=recipe.cache_dir)
        results = [hog_svm(task, progress=False)]
        results += [linear_probe(task, key, recipe, progress=False, size=args.probe_size) for key in PROBE_MODELS]
        y_test = data.expression[data.positions("test")]
    rows = [{"data": args.data, "seed": args.seed, "baseline": r.name, "input": r.backbone,
             "test accuracy": round(accuracy_score(y_test, r.probs.argmax(1)), 4),
             "test macro-F1": round(f1_score(y_test, r.probs.argmax(1), average="macro"), 4)} for r in results]
    print(markdown_table(rows))
    print(f"{time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
