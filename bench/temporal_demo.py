"""`affectkit temporal` on synthetic clips, as a user would run it: a face model trained on other faces (other people,
so no test face was ever seen by it), then the face model's mean over the frames, a model of the frame statistics
and the learned temporal model (GRU), compared on clips of people the split keeps apart.

Two kinds of clips:
- `clips`: `make-demo-data --clips` (AFEW's layout, class folders inside split folders): an expression rises from
  neutral at an onset of its own, holds, and in half of the clips fades again before the end;
- `windows`: `make-demo-data --multimodal --video` read as clips (its manifest's face column, 3-second windows of
  session videos in which the expression rises to its apex and holds), labelled with valence and arousal too.

    python bench/temporal_demo.py                          # one set of each; about 6 minutes on 2 idle cores
    python bench/temporal_demo.py --seeds 0 2 3            # three sets of each
    python bench/temporal_demo.py --seeds 0 2 3 --embeddings   # and the temporal model reading embeddings too

Writes bench/results/temporal.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from affectkit.evaluation.comparison import markdown_table
from affectkit.temporal import TemporalRun, run_temporal
from affectkit.temporal.run import ENSEMBLE, SEQUENCE

from threads import add_threads_option, use_threads

SCORES = ["accuracy", "macro_f1", "valence_ccc", "arousal_ccc"]


def affectkit(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "affectkit.cli", *args, "--quiet"], check=True)


KEPT = "the model kept on validation"
TARGET_OF = {"accuracy": "expression", "macro_f1": "expression", "valence_ccc": "valence", "arousal_ccc": "arousal"}


def kept_row(table: pd.DataFrame) -> dict:
    """The test scores of what validation kept for each target: what a user of `affectkit temporal` gets."""
    row = {"method": KEPT}
    for score, target in TARGET_OF.items():
        kept = [m for m, targets in zip(table["method"], table["kept_for"].fillna(""))
                if target in targets.split(", ")]
        if score in table and kept:
            row[score] = float(table.loc[table["method"] == kept[0], score].iloc[0])
    return row


def summary(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean test scores per method over the sets, how often each was kept, and the mean of the kept ones."""
    both = pd.concat(tables)
    shown = [c for c in SCORES if c in both]
    means = both.groupby("method", sort=False)[shown].mean().reset_index()
    kept = pd.DataFrame([kept_row(t) for t in tables])[["method", *shown]].groupby("method").mean().reset_index()
    means["kept_for (runs)"] = [
        ", ".join(f"{t} {n}" for t in ("expression", "valence", "arousal")
                  if (n := sum(t in str(k).split(", ") for k in both.loc[both["method"] == m, "kept_for"])))
        for m in means["method"]]
    return pd.concat([means, kept.assign(**{"kept_for (runs)": ""})], ignore_index=True)


def with_embedding_rows(run: TemporalRun, embedded: TemporalRun) -> TemporalRun:
    """``run``'s table with the rows of ``embedded`` that read the embeddings (the GRU and the mean with it), renamed;
    the models kept stay ``run``'s (the two runs are compared, not merged)."""
    rows = embedded.table[embedded.table["method"].isin([SEQUENCE, ENSEMBLE])].copy()
    rows["method"] = rows["method"] + " + embedding"
    rows["kept_for"] = ""
    table = pd.concat([run.table, rows], ignore_index=True)
    about = next(note for note in embedded.notes if note.startswith("temporal model"))
    return TemporalRun(run.out, table, run.kept, [*run.notes, f"with --embeddings: {about}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=480, help="clips a set")
    parser.add_argument("--people", type=int, default=24)
    parser.add_argument("--face-n", type=int, default=1600, help="faces the face model learns from (seed 1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sets to render, by seed; not 1")
    parser.add_argument("--fps", type=float, default=4.0, help="frames read a second (`affectkit temporal --fps`)")
    parser.add_argument("--embeddings", action="store_true",
                        help="also run each set with `--embeddings` and add its temporal rows (`... + embedding`)")
    add_threads_option(parser)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "temporal.md")
    args = parser.parse_args()
    use_threads(args)
    start = time.perf_counter()
    runs: dict[str, list] = {"clips": [], "windows": []}
    with tempfile.TemporaryDirectory(prefix="affectkit-temporal-") as tmp:
        tmp = Path(tmp)
        affectkit("make-demo-data", str(tmp / "faces"), "--n", str(args.face_n), "--seed", "1")
        affectkit("train", "--model", "custom_cnn", "--data", str(tmp / "faces"), "--out", str(tmp / "face_run"),
                  "--profile", "demo", "--no-evaluate")
        face_model = tmp / "face_run" / "best_CustomCNN.safetensors"
        trained = time.perf_counter() - start
        for seed in args.seeds:
            sets = {"clips": tmp / f"clips-{seed}", "windows": tmp / f"windows-{seed}" / "manifest.csv"}
            affectkit("make-demo-data", str(sets["clips"]), "--clips", "--n", str(args.n), "--people",
                      str(args.people), "--seed", str(seed))
            affectkit("make-demo-data", str(sets["windows"].parent), "--multimodal", "--video", "--n", str(args.n),
                      "--people", str(args.people), "--seed", str(seed))
            for kind, data in sets.items():
                began = time.perf_counter()
                run = run_temporal(data, tmp / f"run-{kind}-{seed}", face_model, seed=seed, fps=args.fps,
                                   detect=False)
                if args.embeddings:
                    run = with_embedding_rows(run, run_temporal(data, tmp / f"run-{kind}-{seed}-embeddings",
                                                                face_model, seed=seed, fps=args.fps, detect=False,
                                                                embeddings=True))
                runs[kind].append((seed, run, time.perf_counter() - began))
    seeds = " ".join(map(str, args.seeds))
    lines = [
        "# Temporal models on synthetic clips",
        "",
        f"`python bench/temporal_demo.py --n {args.n} --people {args.people} --face-n {args.face_n} --seeds {seeds} "
        f"--fps {args.fps:g} --threads {args.threads}`; {time.perf_counter() - start:.0f} s in all, of which "
        f"{trained:.0f} s rendering {args.face_n} other faces (seed 1) and training the face model on them (custom "
        "CNN, `--profile demo`).",
        "",
        "- clips: `make-demo-data --clips`, 2-second clips in class folders inside split folders (people kept "
        "apart); the expression rises from neutral at an onset of its own, holds, and in half of the clips fades "
        "before the end. Expression only.",
        "- windows: `make-demo-data --multimodal --video` read as clips: 3-second windows of session videos in which "
        "the expression rises to its apex at a moment of its own and holds; expression, valence and arousal; split "
        "by `affectkit` (stratified, subject-disjoint).",
        "",
    ]
    for kind, done in runs.items():
        tables = [run.table for _, run, _ in done]
        lines += [f"## {kind}", "", f"Mean test scores over {len(done)} set(s):", "", markdown_table(summary(tables)),
                  ""]
        print(kind)
        print(summary(tables).to_string(index=False))
        for seed, run, seconds in done:
            shown = ["method", *(c for c in SCORES if c in run.table), "kept_for"]
            lines += [f"### seed {seed}", "", *[f"- {note}" for note in run.notes if not note.startswith("face model")],
                      f"- reading the frames and fitting: {seconds:.0f} s", "", markdown_table(run.table[shown]), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
