"""Data commands: ``make-demo-data`` and ``analyze``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from affectkit.cli.common import (
    AttributesOpt,
    ConfigOpt,
    DataArg,
    LayoutOpt,
    QuietOpt,
    SetOpt,
    app,
    build_config,
    report_to_console,
    say,
)
from affectkit.errors import AffectkitError


@app.command("make-demo-data")
def make_demo_data(
    out: Annotated[Path, typer.Argument(help="Folder to write the synthetic AffectNet-layout data set into.")],
    n: Annotated[int, typer.Option(help="Number of faces.", min=1)] = 1600,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
    imbalance: Annotated[bool, typer.Option(help="Skew classes like AffectNet (Happy >30x Contempt).")] = False,
    multimodal: Annotated[bool, typer.Option(
        help="Also record synthetic speech and physiological signals per face, in sessions of --people persons, and "
        "write OUT/manifest.csv for `affectkit fuse`.")] = False,
    clips: Annotated[bool, typer.Option(
        help="Render labelled face clips instead, in class folders inside train/, val/, test/ (people kept apart), "
        "for `affectkit temporal`.")] = False,
    people: Annotated[int, typer.Option(help="With --multimodal or --clips: simulated persons.", min=1)] = 24,
    video: Annotated[bool, typer.Option(
        help="With --multimodal: faces as one video per session, each sample's expression rising to its "
        "apex.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Render synthetic faces with landmarks, expression, valence and arousal (no download)."""
    from affectkit.data.datamodule import available_cores
    from affectkit.data.synthetic import make_demo_dataset

    if clips and (multimodal or imbalance or video):
        raise AffectkitError("--clips renders face clips alone: leave out --multimodal, --imbalance and --video.")
    if clips and not 3 <= people <= n:
        raise AffectkitError("--clips needs --people 3 or more (one person at least for each split) and --n at "
                             "least --people (a clip for each person).")
    with report_to_console(quiet):
        if clips:
            from affectkit.temporal.demo import make_clip_demo

            path = make_clip_demo(out, n=n, people=people, seed=seed)
        elif multimodal:
            from affectkit.multimodal.demo import make_multimodal_demo

            if imbalance:
                raise AffectkitError("--imbalance applies to the face set alone, not with --multimodal.")
            path = make_multimodal_demo(out, n=n, people=people, seed=seed, video=video)
        else:
            if video:
                raise AffectkitError("--video renders session videos for --multimodal; add --multimodal.")
            path = make_demo_dataset(out, n=n, seed=seed, imbalance=imbalance, workers=available_cores())
    say(f"Wrote {n} demo {'clips' if clips else 'samples' if multimodal else 'faces'} to {path}")


@app.command()
def analyze(
    data: DataArg,
    out: Annotated[Path, typer.Option(help="Folder for dataset_analysis.png and dataset_summary.json.")] = Path(
        "analysis"),
    layout: LayoutOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    by: Annotated[Optional[list[str]], typer.Option(
        help="An attribute of the faces (gender, age, ethnicity: a column of --attributes, the data set's manifest, "
        "or RAF-DB's manual annotation) whose groups' faces, people and classes are counted; repeat it for more.")
    ] = None,
    attributes: AttributesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Validate a data set and plot what it holds: classes by split, valence and arousal, face sizes, subjects; with
    --by, the classes of each group of faces."""
    import json

    from affectkit.config import CLASS_NAMES
    from affectkit.data.analysis import analyze_data
    from affectkit.runs import RunFolder

    cfg = build_config(config, set_, data, layout=layout)
    with report_to_console(quiet):
        index, figure, summary = analyze_data(data, out, cfg, by=by or (), attributes=attributes)
    say(index.describe())
    say(f"{len(index.records)} valid samples, {len(index.rejected)} quarantined (see "
        f"{RunFolder(out).quarantine})")
    for attribute, groups in json.loads(summary.read_text()).get("by", {}).items():
        for group in groups:
            classed = sum(group[name] for name in CLASS_NAMES) or 1
            shares = sorted(((group[name] / classed, name) for name in CLASS_NAMES if group[name]), reverse=True)
            people = f", {group['people']} people" if "people" in group else ""
            say(f"{attribute} {group['group']}: {group['faces']} faces{people}"
                + (f"; {', '.join(f'{name} {share:.0%}' for share, name in shares)}" if shares else ""))
    say(f"Wrote {figure} and {summary}")
