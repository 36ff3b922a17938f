"""Multimodal commands: ``fuse`` (fit and compare fusions of face, audio and physiological signals),
``fuse-predict`` and ``make-windows`` (continuously rated sessions -> a manifest of windows)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from affectkit.cli.common import (
    QuietOpt,
    app,
    kept_when_stopped,
    report_to_console,
    say,
    write_explanation,
    write_labelled_scores,
    write_predictions,
)
from affectkit.cli.infer import BackendOpt, NoDetectOpt, ThreadsOpt, _set_threads

ManifestArg = Annotated[Path, typer.Argument(help="Multimodal manifest CSV: face, audio, physio files per sample, "
                                                  "start/end windows, labels, subject (README, Multimodal fusion).")]
FaceModelOpt = Annotated[Optional[Path], typer.Option(
    "--face-model", help="The saved affectkit model that reads the face column (best_<Model>.safetensors).")]


def _fusion_table(table) -> Table:
    from affectkit.evaluation.comparison import table_number

    shown = [c for c in ("accuracy", "macro_f1", "valence_ccc", "arousal_ccc") if c in table]
    out = Table("method", "modalities", *shown, "kept for", title="Test split")
    for row in table.to_dict("records"):
        out.add_row(row["method"], row["modalities"], *(table_number(row[c], 3) for c in shown), row["kept_for"])
    return out


@app.command()
def fuse(
    manifest: ManifestArg,
    out: Annotated[Path, typer.Option(help="Folder for fusion.md/.csv/.png, features.csv and the kept model.")] = Path(
        "fusion"),
    face_model: FaceModelOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and of the stacking's folds.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Share of the samples for validation (when not given).")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="Share of the samples for test (when not given).")] = 0.15,
    fps: Annotated[float, typer.Option(help="Video windows: face frames read a second.")] = 2.0,
    frame_rate: Annotated[float, typer.Option(
        help="Frames a second of faces given as folders of frames (a video says its own).")] = 25.0,
    no_detect: NoDetectOpt = False,
    person_relative: Annotated[bool, typer.Option(
        help="Where subjects are known, add each audio and physio feature relative to the same person's samples "
        "(speaker and baseline normalisation).")] = True,
    backend: BackendOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fuse face, speech and physiological signals: each alone, early and late fusion, compared on one split."""
    from affectkit.multimodal import run_fusion

    _set_threads(threads)
    with kept_when_stopped(out), report_to_console(quiet):
        run = run_fusion(manifest, out, face_model=face_model, seed=seed, val_fraction=val_fraction,
                         test_fraction=test_fraction, fps=fps, detect=not no_detect, backend=backend,
                         person_relative=person_relative, frame_rate=frame_rate)
    for note in run.notes:
        say(note)
    # Piped output keeps one line per method rather than cells wrapped at 80 columns.
    Console(width=None if sys.stdout.isatty() else 160).print(_fusion_table(run.result.table))
    kept = "; ".join(f"{target}: {fitted.method}" for target, fitted in run.result.kept.items())
    say(f"Kept (chosen on validation): {kept}")
    say(f"Wrote {', '.join(str(p) for p in run.files.values())}")


@app.command("fuse-predict")
def fuse_predict(
    fusion: Annotated[Path, typer.Argument(help="The folder `affectkit fuse` wrote (its kept model).")],
    manifest: Annotated[Path, typer.Argument(help="Manifest of the samples to predict (labels not needed).")],
    out: Annotated[Path, typer.Option(help="CSV to write, one row per sample.")] = Path("fusion_predictions.csv"),
    face_model: FaceModelOpt = None,
    backend: BackendOpt = "auto",
    threads: ThreadsOpt = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Also say which modality each sample's verdict rests on: each modality it was read with "
                          "left out in turn and the sample answered again (<out>_modalities.csv, a row per sample "
                          "and modality; <out>_modalities.png).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Predict expression, valence and arousal of new samples with a fusion `affectkit fuse` kept.

    Each sample's features are logged beside --out as read: the same command, stopped on the way, goes on from there."""
    from affectkit.multimodal import explain_fusion, predict_fusion

    _set_threads(threads)
    log = out.with_name(f"{out.name}.features.partial.jsonl")
    with kept_when_stopped(log), report_to_console(quiet):
        if explain:
            explained = explain_fusion(fusion, manifest, face_model=face_model, backend=backend, log=log)
            predictions, problems = explained.predictions, explained.problems
        else:
            predictions, problems = predict_fusion(fusion, manifest, face_model=face_model, backend=backend,
                                                   log=log)
    write_predictions(predictions, problems, out, f"{len(predictions)} rows", "sample")
    write_labelled_scores(predictions, out, "sample")
    if explain:
        from affectkit.evaluation.plots import plot_modality_importance

        write_explanation(explained.modalities, out, "modalities", plot_modality_importance,
                          f"Which modality each sample's verdict rests on ({fusion.name})")


@app.command("make-windows")
def make_windows(
    sessions: Annotated[Path, typer.Argument(help="Sessions CSV: labels (time, valence, arousal[, expression]) and the "
                                                  "session's face video, audio and physio files, subject, split.")],
    out: Annotated[Path, typer.Option(help="Manifest to write, for `affectkit fuse`.")] = Path("windows.csv"),
    window: Annotated[float, typer.Option(help="Window length in seconds.")] = 4.0,
    hop: Annotated[float, typer.Option(help="Seconds from one window's start to the next.")] = 2.0,
    delay: Annotated[float, typer.Option(
        help="The raters' reaction lag in seconds: each window is labelled with the ratings this much later "
        "(continuous valence/arousal ratings trail what they rate by a few seconds).")] = 0.0,
) -> None:
    """Cut continuously rated sessions into labelled time windows: a manifest for `affectkit fuse`."""
    from affectkit.multimodal.windows import window_manifest

    path, count = window_manifest(sessions, out, window=window, hop=hop, delay=delay)
    say(f"Wrote {count} windows to {path}")
