"""`affectkit temporal-frames` on synthetic clips rated frame by frame, as a user would run it on AFEW-VA: a
valence/arousal face model trained on the train clips' frames (`affectkit train`, so its run folder holds the
split), then the face model as is, smoothed over each clip and read by the per-frame GRU, compared by CCC.

The clips (`affectkit.temporal.demo.make_rated_clip_demo`, AFEW-VA's layout): in each, one person's expression
swells and ebbs over the clip, its valence and arousal following the expression's strength frame by frame, while
the pose jitters from frame to frame.

    python bench/temporal_frames.py                   # one set; a few minutes on 2 idle cores
    python bench/temporal_frames.py --seeds 0 1 2     # three sets

Writes bench/results/temporal_frames.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from affectkit.config import Config
from affectkit.evaluation.comparison import markdown_table
from affectkit.pipeline.run import train_one
from affectkit.temporal.continuous import run_continuous
from affectkit.temporal.demo import make_rated_clip_demo

from threads import add_threads_option, use_threads


def one_set(seed: int, clips: int, frames: int, actors: int, work: Path) -> tuple[pd.DataFrame, dict, list[str]]:
    data = make_rated_clip_demo(work / f"clips{seed}", clips, frames, actors, seed=seed, progress=False)
    config = Config(img_size=64, batch_size=32, epochs=20, fine_tune_epochs=0, lr_schedule="cosine", seed=seed,
                    early_stopping_patience=20)
    face_model = train_one("custom_cnn", data, work / f"face{seed}", config, quiet=True)
    run = run_continuous(data, work / f"frames{seed}", face_model, seed=seed)
    return run.table.assign(seed=seed), run.kept, run.notes


KEPT = "the method kept on validation"


def kept_row(table: pd.DataFrame, kept: dict[str, str]) -> dict:
    """The test CCC of what validation kept for each dimension: what a user of `temporal-frames` gets."""
    by_method = table.set_index("method")
    return {"method": KEPT, **{f"{d}_ccc": float(by_method.loc[m, f"{d}_ccc"]) for d, m in kept.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--actors", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "temporal_frames.md")
    add_threads_option(parser)
    args = parser.parse_args()
    use_threads(args)
    start = time.perf_counter()
    tables, lines = [], []
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            table, kept, notes = one_set(seed, args.clips, args.frames, args.actors, Path(work))
            tables.append(pd.concat([table, pd.DataFrame([kept_row(table, kept)])], ignore_index=True))
            lines += [f"### Seed {seed}", "", *[f"- {note}" for note in notes],
                      "- kept: " + "; ".join(f"{d}: {m}" for d, m in kept.items()), "", markdown_table(table), ""]
            print(f"seed {seed}:\n{table.to_string(index=False)}", flush=True)
    mean = pd.concat(tables).groupby("method", sort=False)[["valence_ccc", "arousal_ccc", "val_valence_ccc",
                                                             "val_arousal_ccc"]].mean().reset_index()
    minutes = (time.perf_counter() - start) / 60
    text = [
        "# Valence and arousal frame by frame (`affectkit temporal-frames`) on synthetic rated clips", "",
        f"`python bench/temporal_frames.py --seeds {' '.join(map(str, args.seeds))} --clips {args.clips} --frames "
        f"{args.frames} --actors {args.actors}`, {minutes:.1f} minutes. Each set: {args.clips} clips of "
        f"{args.frames} frames, {args.actors} people (AFEW-VA's layout), a custom CNN trained on the train clips' "
        "frames at 64 px (valence/arousal only, 20 epochs), then the three methods on the same split.", "",
        "## Mean over the sets (test frames' CCC; validation CCC chose)", "", markdown_table(mean), "",
        "## Each set", "", *lines]
    args.out.write_text("\n".join(text))
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
