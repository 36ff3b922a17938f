"""What every command shares: the app, the options several commands take, the config chain, console reporting and
the one place errors become a sentence instead of a traceback."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, ContextManager, Optional, Union, get_args, get_origin

import typer
from rich.markup import escape

from affectkit.atomic import atomic_path, atomic_write_text
from affectkit.config import Config, DataConfig, coerce_value, load_config, parse_set_options, profile_names
from affectkit.data.archives import data_config
from affectkit.errors import AffectkitError
from affectkit.progress import LIGHTNING_LOGGERS, LIGHTNING_NOISE, Reporter, console, reporting, to_console

app = typer.Typer(
    help="affectkit: train, evaluate, compare and serve facial expression + valence/arousal models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

DataArg = Annotated[Path, typer.Argument(help="Data folder or CSV, or a .zip/.tar(.gz) of one, or Hugging Face "
                                              "Parquet/Arrow tables: class folders, FER2013, AffectNet (official "
                                              "CSVs or .npy), FER+, RAF-DB, ExpW, Aff-Wild2, CK+, Oulu-CASIA, JAFFE, "
                                              "KDEF, RaFD, face boxes (YOLO, COCO, Pascal VOC), a manifest, or "
                                              "images whose names say their expression (label_pattern); the layout "
                                              "is detected (README, Data).")]
LayoutOpt = Annotated[Optional[str], typer.Option(help="Force a layout: file_names, affectnet, affectnet_official, "
                                                       "fer2013, ferplus, rafdb, expw, affwild2, ckplus, oulu_casia, "
                                                       "afew_va, yolo, coco, voc, manifest or class_folders.")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="YAML config file (see configs/).")]
ProfileOpt = Annotated[Optional[str], typer.Option(
    "--profile", help=f"A packaged profile ({', '.join(profile_names())}) under --config and the options; "
    "recommended suits a small real data set.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Any config key, e.g. --set loss.focal_gamma=2.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or per-epoch lines (for logs).")]
PrintConfigOpt = Annotated[bool, typer.Option(
    "--print-config", help="Print the fully resolved config as YAML (fit for --config) and exit without training.")]
PretrainedOpt = Annotated[bool, typer.Option(
    help="Start from pretrained weights (ImageNet; FER2013 expressions for mini_xception): affectkit's registry of "
    "shipped weights, timm's cache, then the hub "
    "(`affectkit weights` lists what this machine has).")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue an interrupted run in the same --out folder.")]
SplitOpt = Annotated[str, typer.Option(help="test, val, train (from the run's splits.csv; another data set's own) "
                                             "or all.")]
SplitsOpt = Annotated[Optional[Path], typer.Option(
    help="splits.csv to use (default: the model's own, beside it or atop the benchmark, run or study folder "
         "holding it).")]
ByOpt = Annotated[Optional[list[str]], typer.Option(
    help="An attribute of the faces (gender, age, ethnicity, pose: a column of --attributes) to score each of its "
         "groups by, with the widest gap between groups and its interval; repeat it for more.")]
AttributesOpt = Annotated[Optional[Path], typer.Option(
    help="CSV (or JSON Lines) of the faces' attributes for --by: a column naming each image (path, file, image or "
         "id) and one per attribute (default: the data set's own manifest).")]


def comma_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


# -- options derived from the config ------------------------------------------------------------------------------

TRAINING_PANEL = "Training options (config keys; --set sets any other)"


def _option_type(annotation: Any) -> type:
    """What the command line parses a config key's value as: its own type where that is a plain int, float or bool
    (``None`` left out: an option not given changes nothing), else text, read as the key wants (``coerce_value``)."""
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not NoneType]
        annotation = members[0] if len(members) == 1 else str
    return annotation if annotation in (int, float, bool) else str


@dataclass(frozen=True)
class ConfigOption:
    """A command-line option that sets the config key ``key``: its type and help come from the key's declaration in
    :class:`~affectkit.config.Config`; ``flag`` overrides the spelling ``--<key with dashes>``."""

    key: str
    flag: str | None = None

    def parameter(self) -> inspect.Parameter:
        field = Config.model_fields[self.key]
        option = typer.Option(self.flag or "--" + self.key.replace("_", "-"), help=field.description,
                              rich_help_panel=TRAINING_PANEL)
        return inspect.Parameter(self.key, inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=Annotated[Optional[_option_type(field.annotation)], option])

    def value(self, given: Any) -> Any:
        return coerce_value(self.key, given) if isinstance(given, str) else given


TRAINING_OPTIONS = (
    ConfigOption("epochs"),
    ConfigOption("fine_tune_epochs"),
    ConfigOption("img_size"),
    ConfigOption("batch_size"),
    ConfigOption("max_samples"),
    ConfigOption("learning_rate", "--lr"),
    ConfigOption("fine_tune_lr"),
    ConfigOption("seed"),
    ConfigOption("num_workers", "--workers"),
    ConfigOption("devices"),
    ConfigOption("num_nodes"),
    ConfigOption("use_light_models", "--light/--no-light"),
)


def _given(options: list[ConfigOption], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the options' values out of a command's arguments: config key -> value, for the options given."""
    values = {o.key: o.value(kwargs.pop(o.key)) for o in options}
    return {key: value for key, value in values.items() if value is not None}


def _extend(command: Callable, added: list[inspect.Parameter], hidden: str,
            prepare: Callable[[dict[str, Any]], Any]) -> Callable:
    """``command`` with the options ``added`` (Typer reads a command's options from its signature); ``prepare``
    takes their values out of the arguments and makes what the command receives as ``hidden`` instead."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != hidden]

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        prepared = prepare(kwargs)
        return command(**kwargs, **{hidden: prepared})

    run.__signature__ = signature.replace(parameters=[*own, *added])
    return run


def _training_options(exclude: tuple[str, ...]) -> list[ConfigOption]:
    return [o for o in TRAINING_OPTIONS if o.key not in exclude]


def training_options(*, exclude: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Give a command the training options (``TRAINING_OPTIONS`` without the keys in ``exclude``); it receives the
    ones given as ``overrides``, a mapping of config key to value."""
    options = _training_options(exclude)
    return lambda command: _extend(command, [o.parameter() for o in options], "overrides",
                                   lambda kwargs: _given(options, kwargs))


def _keyword(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


CONFIG_SOURCES = [_keyword("layout", LayoutOpt), _keyword("profile", ProfileOpt), _keyword("config_file", ConfigOpt),
                  _keyword("sets", SetOpt), _keyword("print_config", PrintConfigOpt, False)]


def configured(*, exclude: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Give a command that trains on its ``data`` the sources of its config (--layout, --profile, --config, --set and
    the training options of :func:`training_options`) and --print-config; it receives the resolved Config as
    ``config`` (see :func:`build_config`), and does not run under --print-config, which prints it instead."""
    options = _training_options(exclude)

    def resolve(kwargs: dict[str, Any]) -> Config:
        sources = {p.name: kwargs.pop(p.name) for p in CONFIG_SOURCES}
        config = build_config(sources["config_file"], sources["sets"], kwargs["data"], sources["profile"],
                              layout=sources["layout"], **_given(options, kwargs))
        if sources["print_config"]:
            print_config_and_exit(config)
        return config

    return lambda command: _extend(command, [*CONFIG_SOURCES, *(o.parameter() for o in options)], "config", resolve)


def say(message: str, style: str | None = None) -> None:
    """A line for the user (stderr), as written: a path or a regex in it is never read as Rich markup."""
    console.print(escape(message), style=style)


@contextmanager
def kept_when_stopped(kept: Path) -> Iterator[None]:
    """A long read whose progress goes to ``kept`` (a file, a folder, or a pattern of parts) as it reads: Ctrl-C
    there says where the work is and how to go on, and exits 130, instead of Click's bare "Aborted!"."""
    try:
        yield
    except KeyboardInterrupt:
        say(f"Stopped (Ctrl-C): what was read so far is kept ({kept}); the same command goes on from there.")
        raise typer.Exit(130) from None


def chosen_model_of_run(value: Path | None) -> Path | None:
    """A MODEL argument given as a run folder: the model its report chose, or the one model the folder holds, named
    once; anything else as given."""
    if value is None or not value.is_dir():
        return value
    from affectkit.models.metadata import model_paths
    from affectkit.runs import RunFolder

    weights, _ = model_paths(value)
    chose = "the model its report chose" if RunFolder(value).chosen_model() else "the one model it holds"
    say(f"{value}: {chose}, {weights.name}")
    return weights


# -- the config chain ---------------------------------------------------------------------------------------------


def announce_data_config(card: DataConfig | None) -> None:
    """One line when a command takes its starting settings from the data set's ``affectkit.yaml``."""
    if card is not None:
        say(f"Settings from {card.where} (this data set's recommended profile); --config and options override them, "
            "deleting the file restores the defaults.", style="cyan")


def build_config(config_file: Path | None, sets: list[str] | None, data: Path | None = None,
                 profile: str | None = None, **options: Any) -> Config:
    """Defaults <- DATA/affectkit.yaml <- --profile <- --config <- --set pairs <- explicit options (the most specific
    wins)."""
    card = data_config(data)
    announce_data_config(card)
    config = load_config(config_file, data=card, profile=profile)
    return config.with_values(parse_set_options(sets)).override(**options)


def print_config_and_exit(config: Config) -> None:
    """``--print-config``: plain YAML on stdout (progress and notes go to stderr), so it can be saved as it is."""
    typer.echo(config.dump_yaml(), nl=False)
    raise typer.Exit()


def report_to_console(quiet: bool) -> ContextManager[Reporter]:
    """What a command's library call reports goes to the console (stderr): its notes always, its progress unless
    ``--quiet``."""
    return reporting(to_console(progress=not quiet))


def write_table(table: Any, out: Path) -> Path:
    """A DataFrame to ``out`` as CSV, whole or not at all: a run stopped while writing leaves the file it replaces
    (or none), never half a table after hours of reading clips."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    return out


def write_predictions(predictions: Any, problems: list[str], out: Path, written: str, unit: str) -> None:
    """A predict command's table (a DataFrame) to ``out`` as CSV (:func:`write_table`), each input it skipped and
    why, and what it wrote (``written``: "12 rows"); ``unit`` names the inputs ("clip")."""
    write_table(predictions, out)
    for problem in problems:
        console.print(f"[yellow]skipped:[/yellow] {escape(problem)}")
    say(f"Wrote {written} to {out}" + (f"; {len(problems)} {unit}(s) skipped" if problems else ""))


def write_explanation(table: Any, out: Path, part: str, plot: Callable[[Any, Path, str], Path], title: str) -> None:
    """A predict command's ``--explain`` table (a DataFrame) to ``<out>_<part>.csv`` (:func:`write_table`) and, where
    it has rows, ``plot`` of it to ``<out>_<part>.png`` under ``title``; says what it wrote."""
    written = [write_table(table, out.with_name(f"{out.stem}_{part}.csv"))]
    if len(table):
        written.append(plot(table, out.with_name(f"{out.stem}_{part}.png"), title))
    say(f"Wrote {', '.join(map(str, written))}", style="bold green")


def write_labelled_scores(predictions: Any, out: Path, unit: str, unit_column: str = "id") -> None:
    """Where the inputs of a fusion's or temporal model's predictions (a DataFrame) carry labels (``true_``
    columns), their scores against them (:func:`~affectkit.multimodal.fusion.labelled_scores`, ``unit_column``
    there) to ``<out>_scores.json``, and said; ``unit`` names the inputs ("clip")."""
    from affectkit.multimodal.fusion import DIMENSIONS, labelled_scores

    scores = labelled_scores(predictions, unit_column)
    if scores is None:
        return
    path = out.with_name(f"{out.stem}_scores.json")
    atomic_write_text(path, json.dumps(scores, indent=2))

    def interval(name: str) -> str:
        low, high = scores.get(f"{name}_low"), scores.get(f"{name}_high")
        return "" if low is None else f" [{low:.3f}, {high:.3f}]"

    parts = []
    if "accuracy" in scores:
        parts.append(f"accuracy {scores['accuracy']:.3f}{interval('accuracy')}, macro-F1 {scores['macro_f1']:.3f} "
                     f"on the {scores['expression_samples']} {unit}s with an expression")
    parts += [f"{dimension} CCC {scores[f'{dimension}_ccc']:.3f}{interval(f'{dimension}_ccc')} on "
              f"{scores[f'{dimension}_samples']}" for dimension in DIMENSIONS if f"{dimension}_ccc" in scores]
    say(f"Against the labels the {unit}s carry (95% intervals): {'; '.join(parts)}. Wrote {path}")
    if seen := scores.get("seen_in_training"):
        console.print(f"[yellow]Warning:[/yellow] {seen} of these {unit}s fit the model or chose it (its train and "
                      "val splits: fit_split): these are no test scores; its test rows are.")


# -- running ------------------------------------------------------------------------------------------------------


def _quiet_libraries() -> None:
    """Lightning's start-up banners and tips would drown the per-epoch lines; its warnings stay. Set up before
    Lightning is imported, not by importing it: that takes seconds a command which never trains (--help, predict)
    would wait. Its packages print from INFO up through their own handlers unless the root logger has one when they
    are imported (then they pass their messages up, to the ``lightning`` logger whose handler prints INFO too): so
    the root gets one, and Lightning's two packages stop at a handler of their own that passes warnings only."""
    warnings_only = logging.StreamHandler()
    warnings_only.setLevel(logging.WARNING)
    if not logging.root.handlers:
        logging.root.addHandler(warnings_only)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.addHandler(warnings_only)
    for pattern in LIGHTNING_NOISE:
        warnings.filterwarnings("ignore", message=pattern)


def file_error(exc: OSError) -> str:
    """A file system's refusal in a sentence: the path, what the system said, and where it was going (an output
    folder that cannot be made, a file that cannot be written)."""
    target = f" -> {exc.filename2}" if exc.filename2 else ""
    return f"{exc.filename}{target}: {exc.strerror or exc} (check the path and its permissions, or give another)."


def _quiet_video_decoders() -> None:
    """FFmpeg and OpenCV print lines of their own about a video or stream they cannot read ("moov atom not found",
    "Stream timeout triggered"), beside the sentence affectkit says about the same file or stream. Set before OpenCV
    is first imported, which reads them then; a variable the user set is kept (to see those lines again while
    debugging a camera: OPENCV_FFMPEG_LOGLEVEL=32 OPENCV_LOG_LEVEL=INFO)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


def main() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:lightning")
    _quiet_libraries()
    _quiet_video_decoders()
    try:
        app()
    except AffectkitError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}")
        sys.exit(2)
    except OSError as exc:
        if exc.filename is None:  # not about a file the user named: a defect, shown whole
            raise
        console.print(f"[bold red]error:[/bold red] {escape(file_error(exc))}")
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: rerun the same command with --resume to continue[/yellow]")
        sys.exit(130)
