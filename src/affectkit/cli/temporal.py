"""Temporal commands: ``temporal`` (fit and compare models of labelled face clips: the face model's mean over the
frames, the clip's frame statistics, a learned GRU), ``temporal-predict`` and ``clip-frames`` (clips' faces as an
image data set, to train a face model for their domain)."""

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
from affectkit.cli.multimodal import FaceModelOpt

ClipsArg = Annotated[Path, typer.Argument(help="Labelled clips: class folders of videos or of frame folders "
                                               "(DATA/<class>/*.mp4 or DATA/<class>/<clip>/*.jpg, optionally inside "
                                               "train/, val/, test/), DFEW's folder (Clip/, EmoLabel_DataSplit/), "
                                               "FERV39k's (2_ClipsforFaceCrop/, 4_setups/), CK+'s "
                                               "(cohn-kanade-images/, Emotion/), or "
                                               "a clip manifest CSV (face, start, end, expression, valence, arousal, "
                                               "subject, split).")]
FpsOpt = Annotated[float, typer.Option(help="Frames of each clip read a second.")]
FrameRateOpt = Annotated[float, typer.Option(
    help="Frames a second of clips given as folders of frames (a video says its own). For folders holding a fixed "
    "number of frames spread over the clip (DFEW's clip_224x224_16f), give --fps's value to read every frame.")]
FoldOpt = Annotated[int, typer.Option(help="DFEW: which of its five folds (set_<k>.csv) to read.")]
ClassMapOpt = Annotated[Optional[list[str]], typer.Option(
    help="A class folder not named after an expression: FOLDER=CLASS, or FOLDER=ignore to leave it out (repeatable).")]


def _class_map(pairs: list[str]) -> dict[str, str]:
    """``["Scream=fear", "Other=ignore"]`` -> ``{"Scream": "fear", "Other": "ignore"}``."""
    bad = [pair for pair in pairs if pair.count("=") != 1 or not all(part.strip() for part in pair.split("="))]
    if bad:
        raise typer.BadParameter(f"{bad[0]!r}: give FOLDER=CLASS, e.g. --class-map Scream=fear.",
                                 param_hint="--class-map")
    return dict(pair.split("=") for pair in pairs)


def _table(table) -> Table:
    from affectkit.evaluation.comparison import table_number

    shown = [c for c in ("accuracy", "macro_f1", "valence_ccc", "arousal_ccc") if c in table]
    out = Table("method", *shown, "kept for", title="Test clips")
    for row in table.to_dict("records"):
        out.add_row(row["method"], *(table_number(row[c], 3) for c in shown), row["kept_for"])
    return out


@app.command()
def temporal(
    clips: ClipsArg,
    face_model: Annotated[Path, typer.Option(
        "--face-model", help="The saved affectkit model that reads the frames (best_<Model>.safetensors).")],
    out: Annotated[Path, typer.Option(help="Folder for temporal.md/.csv/.png, the frames read and the kept model.")
                   ] = Path("temporal"),
    seed: Annotated[int, typer.Option(help="Seed of the split and of the temporal model.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Share of the clips for validation (when not given).")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="Share of the clips for test (when not given).")] = 0.15,
    fps: FpsOpt = 4.0,
    frame_rate: FrameRateOpt = 25.0,
    fold: FoldOpt = 1,
    class_map: ClassMapOpt = None,
    no_detect: NoDetectOpt = False,
    embeddings: Annotated[bool, typer.Option(
        help="The temporal model also reads the face model's embedding of each face (its pooled backbone "
        "features; PyTorch backend): for large clip sets.")] = False,
    backend: BackendOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Learn expression, valence and arousal from face clips: the face model's mean over the frames, a model of the
    clip's frame statistics and a temporal model (GRU) over the frames, compared on one split."""
    from affectkit.temporal import run_temporal

    _set_threads(threads)
    with kept_when_stopped(out), report_to_console(quiet):
        run = run_temporal(clips, out, face_model, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                           fps=fps, detect=not no_detect, backend=backend, embeddings=embeddings,
                           frame_rate=frame_rate, fold=fold, class_map=_class_map(class_map or []))
    for note in run.notes:
        say(note)
    # Piped output keeps one line per method rather than cells wrapped at 80 columns.
    Console(width=None if sys.stdout.isatty() else 160).print(_table(run.table))
    kept = "; ".join(f"{target}: {k.method}" for target, k in run.kept.items())
    say(f"Kept (chosen on validation): {kept}")
    say(f"Wrote {', '.join(str(p) for p in run.files.values())}")


@app.command("temporal-predict")
def temporal_predict(
    model: Annotated[Path, typer.Argument(help="The folder `affectkit temporal` wrote (its kept model).")],
    clips: Annotated[Path, typer.Argument(help="Clips to predict: one video, class folders of videos or frame "
                                               "folders, DFEW's, FERV39k's or CK+'s folder, or a manifest CSV with a "
                                               "face column (labels not needed).")],
    out: Annotated[Path, typer.Option(help="CSV to write, one row per clip.")] = Path("temporal_predictions.csv"),
    face_model: FaceModelOpt = None,
    fold: FoldOpt = 1,
    backend: BackendOpt = "auto",
    threads: ThreadsOpt = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Also say which frames each clip's verdict rests on: each frame left out in turn and the "
                          "clip answered again (<out>_frames.csv, a row per frame; <out>_frames.png, the first "
                          "12 clips).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Predict expression, valence and arousal of new clips with a model `affectkit temporal` kept.

    The clips read so far are stored beside --out every two minutes and on Ctrl-C: the same command, stopped on the
    way, goes on from there."""
    from affectkit.temporal import explain_temporal, predict_temporal
    from affectkit.temporal.sequences import part_pattern

    _set_threads(threads)
    checkpoint = out.with_name(f"{out.name}.frames.npz")
    with kept_when_stopped(part_pattern(checkpoint)), report_to_console(quiet):
        if explain:
            explained = explain_temporal(model, clips, face_model=face_model, backend=backend, fold=fold,
                                         checkpoint=checkpoint)
            predictions, problems = explained.predictions, explained.problems
        else:
            predictions, problems = predict_temporal(model, clips, face_model=face_model, backend=backend,
                                                     fold=fold, checkpoint=checkpoint)
    write_predictions(predictions, problems, out, f"{len(predictions)} rows", "clip")
    write_labelled_scores(predictions, out, "clip")
    if explain:
        from affectkit.evaluation.plots import plot_frame_importance

        write_explanation(explained.frames, out, "frames", plot_frame_importance,
                          f"Which frames each clip's verdict rests on ({model.name})")


@app.command("clip-frames")
def clip_frames(
    clips: ClipsArg,
    out: Annotated[Path, typer.Option(help="New folder for the face images (class folders, split folders as the "
                                           "clips have them).")] = Path("clip_frames"),
    fps: FpsOpt = 2.0,
    size: Annotated[int, typer.Option(help="Side of the square face images, in pixels.")] = 112,
    frame_rate: FrameRateOpt = 25.0,
    fold: FoldOpt = 1,
    class_map: ClassMapOpt = None,
    no_detect: Annotated[bool, typer.Option(
        "--no-detect", help="The clips are face crops already: keep each frame's centre square.")] = False,
    last: Annotated[Optional[int], typer.Option(
        help="Keep only each clip's last N faces read: for clips that run from a neutral onset to the expression's "
        "apex (posed sequences), whose early frames do not show the label.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Write the faces of labelled clips' frames as an image data set (class folders, each person's or clip's frames
    kept on one side of every split), to train a face model for the clips' domain with `affectkit run`."""
    from affectkit.temporal.frames import extract_clip_frames

    with report_to_console(quiet):
        done = extract_clip_frames(clips, out, fps=fps, size=size, detect=not no_detect, fold=fold,
                                   class_map=_class_map(class_map or []), frame_rate=frame_rate, last=last)
    skipped = f"; {len(done.rejected)} clip(s) quarantined (see {out / 'quarantine.csv'})" if done.rejected else ""
    say(f"Wrote {done.images} face images of {done.clips} clips to {out}{skipped}")
    say(f"Next: affectkit run {out} --profile recommended, then affectkit temporal with its model")


@app.command("temporal-frames")
def temporal_frames(
    data: Annotated[Path, typer.Argument(help="A data set annotated frame by frame: AFEW-VA's folder, or "
                                              "Aff-Wild2's (its VA challenge).")],
    face_model: Annotated[Path, typer.Option(
        "--face-model", help="The saved affectkit model that reads the frames (best_<Model>.safetensors); it must "
        "predict valence and arousal.")],
    out: Annotated[Path, typer.Option(help="Folder for continuous.md/.csv/.png and the kept model.")] = Path(
        "temporal_frames"),
    seed: Annotated[int, typer.Option(help="Seed of the split (where one is made) and of the temporal model.")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Valence and arousal frame by frame: the face model as is, smoothed over each clip, and a learned temporal
    model (GRU) over the clip's frames, compared by CCC; the one best on validation kept for each dimension."""
    from affectkit.evaluation.comparison import table_number
    from affectkit.temporal.continuous import SCORES, run_continuous

    with report_to_console(quiet):
        run = run_continuous(data, out, face_model, seed=seed)
    for note in run.notes:
        say(note)
    table = Table("method", *SCORES, "kept for", title="Test frames")
    for row in run.table.to_dict("records"):
        table.add_row(row["method"], *(table_number(row[c], 3) for c in SCORES), row["kept_for"])
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    say("Kept (chosen on validation): " + "; ".join(f"{d}: {m}" for d, m in run.kept.items()))
    say(f"Wrote {', '.join(str(p) for p in run.files.values())}")


@app.command("temporal-frames-predict")
def temporal_frames_predict(
    model: Annotated[Path, typer.Argument(help="The folder `affectkit temporal-frames` wrote (its kept model).")],
    clips: Annotated[Path, typer.Argument(help="Clips: one video, or videos or folders of frames anywhere under a "
                                               "folder, or a manifest CSV with a face column; AFEW-VA's or "
                                               "Aff-Wild2's folder, or one AFEW-VA clip's, also scores its frames "
                                               "against their labels.")],
    out: Annotated[Path, typer.Option(help="CSV to write, one row per frame with a face.")] = Path(
        "frame_predictions.csv"),
    face_model: FaceModelOpt = None,
    frame_rate: FrameRateOpt = 25.0,
    no_detect: NoDetectOpt = False,
    backend: BackendOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Valence and arousal of every frame of new clips, by the methods `affectkit temporal-frames` kept.

    Given AFEW-VA's or Aff-Wild2's folder, each frame's labels are added and the frames scored against them
    (<out>_scores.json). Each clip's rows are logged beside --out as read: the same command, stopped on the way,
    goes on from there."""
    from affectkit.temporal.continuous import predict_continuous

    _set_threads(threads)
    log = out.with_name(f"{out.name}.frames.partial.jsonl")
    with kept_when_stopped(log), report_to_console(quiet):
        predictions, problems = predict_continuous(model, clips, face_model=face_model, backend=backend,
                                                   detect=not no_detect, frame_rate=frame_rate, log=log)
    write_predictions(predictions, problems, out,
                      f"{len(predictions)} frames of {predictions['clip'].nunique()} clip(s)", "clip")
    write_labelled_scores(predictions, out, "frame", unit_column="clip")
