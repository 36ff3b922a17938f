"""Hyperparameter search with Optuna: TPE sampling, median pruning on the per-epoch validation loss, resumable.

Layout of ``OUT``: ``study.db`` (the Optuna study; a rerun continues it up to the requested trial count),
``splits.csv`` (one split for every trial), ``trials/<n>/`` (each trial's run folder), and the results
``best_config.yaml``, ``best_trial.json`` and ``tuning_history.png``.

Trials are scored on a fixed yardstick: the validation loss of the trial's best model under the *base* config's loss
weights. Each trial's own ``val_loss`` uses its sampled valence/arousal weights, so ranking trials by it would
reward small weights rather than better models. Pruning still uses the trial's own per-epoch ``val_loss`` (it is
what Lightning reports each epoch); the sampled weights bias that comparison only mildly, and only prunes early.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from affectkit.config import Config
from affectkit.errors import AffectkitError
from affectkit.progress import reporter, silenced
from affectkit.runs import RunFolder

# Lightning, torch and Optuna are imported where they are used, so that importing this module stays quick.
if TYPE_CHECKING:
    import lightning as L
    import optuna
    from optuna.trial import FrozenTrial

    from affectkit.data.datamodule import PreparedData

STUDY_NAME = "affectkit"
HEAD_WIDTHS = (128, 256, 512, 1024)
# The custom CNN's family that ``--architecture`` searches: the spec's network (4 stages from 32 channels, one
# convolution each, no attention) is one member. Widths double from stage to stage, as in the spec.
STAGES = (3, 4, 5)
BASE_WIDTHS = (16, 24, 32, 48)
CONVS_PER_STAGE = (1, 2)
ATTENTION = ("none", "se", "cbam", "self")


@functools.cache
def _pruning_callback_class() -> type[L.Callback]:
    import lightning as L
    import optuna

    class PruningCallback(L.Callback):
        """Report ``monitor`` to the trial after every validation and stop the trial when the pruner says so.

        One instance serves every phase of a trial, so its step counter runs on across phases: step k is the k-th
        validation of the trial, comparable between trials of the same phase plan.
        """

        def __init__(self, trial: optuna.Trial, monitor: str):
            self.trial = trial
            self.monitor = monitor
            self.step = 0

        def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                return
            self.step += 1
            self.trial.report(float(value), self.step)
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"{self.monitor} {float(value):.4f} at step {self.step}")

    return PruningCallback


def pruning_callback(trial: optuna.Trial, monitor: str = "val_loss") -> L.Callback:
    """A Lightning callback that reports ``monitor`` to ``trial`` each validation and raises ``TrialPruned``."""
    return _pruning_callback_class()(trial, monitor)


def sample_params(trial: optuna.Trial, models: list[str], architecture: bool = False,
                  valence_arousal: bool = True) -> dict[str, Any]:
    """A trial's draw; with ``architecture``, trials of the custom CNN also draw its architecture (a search space
    that depends on the model: Optuna's define-by-run). The valence/arousal loss weights are drawn only where the
    data has ``valence_arousal`` annotations: elsewhere they weigh nothing, and each idle dimension would only
    slow the sampler's search."""
    params = {
        "model": trial.suggest_categorical("model", models),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "fine_tune_lr": trial.suggest_float("fine_tune_lr", 1e-5, 1e-3, log=True),
        "dropout_scale": trial.suggest_float("dropout_scale", 0.5, 1.5),
        "head_width": trial.suggest_categorical("head_width", list(HEAD_WIDTHS)),
    }
    if valence_arousal:
        params |= {"loss.valence_weight": trial.suggest_float("loss.valence_weight", 0.1, 1.0),
                   "loss.arousal_weight": trial.suggest_float("loss.arousal_weight", 0.1, 1.0)}
    if architecture and params["model"] == "custom_cnn":
        params |= {
            "cnn_stages": trial.suggest_categorical("cnn_stages", list(STAGES)),
            "cnn_base_width": trial.suggest_categorical("cnn_base_width", list(BASE_WIDTHS)),
            "cnn_convs_per_stage": trial.suggest_categorical("cnn_convs_per_stage", list(CONVS_PER_STAGE)),
            "attention": trial.suggest_categorical("attention", list(ATTENTION)),
        }
    return params


def config_changes(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as config keys: the model is not one, and the stage count and first width become the
    custom CNN's ``cnn_widths``."""
    changes = {k: v for k, v in params.items() if k not in ("model", "cnn_stages", "cnn_base_width")}
    if "cnn_stages" in params:
        changes["cnn_widths"] = [params["cnn_base_width"] * 2 ** i for i in range(params["cnn_stages"])]
    return changes


def trial_config(config: Config, params: dict[str, Any]) -> Config:
    """``config`` with a trial's parameters applied."""
    return config.override(**config_changes(params))


def reference_val_loss(best_path: Path, data: PreparedData, config: Config) -> float:
    """Validation loss of a saved model under ``config``'s loss settings and expression targets, over the whole
    split at once, as training computes it (over the classes the model was trained on: label smoothing spreads
    nothing onto a class the data lacks, whose logit is a large negative constant)."""
    import torch

    from affectkit.data.datamodule import AffectDataModule, expression_targets
    from affectkit.evaluation.evaluator import predict_split
    from affectkit.models.io import load_model
    from affectkit.training.losses import multitask_loss, trained_columns
    from affectkit.training.trainer import class_weights

    model, _ = load_model(best_path)
    val = data.positions("val")
    pred = predict_split(model, data, val)
    va = torch.from_numpy(pred.valence_arousal)
    targets = expression_targets(data, config.label_distribution)[val]  # the votes, where trials learn them
    loss, _ = multitask_loss(torch.from_numpy(pred.logits), va[:, 0], va[:, 1], torch.from_numpy(targets),
                             torch.from_numpy(data.valence_arousal[val]), config.loss,
                             class_weights(AffectDataModule(data, config)),
                             classes=trained_columns(model.output_classes))
    return float(loss)


def make_objective(data: PreparedData, folder: RunFolder, config: Config, models: list[str],
                   architecture: bool = False):
    from affectkit.models.factory import build_model, count_parameters
    from affectkit.training.trainer import train_model

    def objective(trial: optuna.Trial) -> float:
        params = sample_params(trial, models, architecture, data.trains_valence_arousal)
        settings = trial_config(config, params)
        # Known before training, so a pruned trial has it too (the architecture plot shows every trial).
        trial.set_user_attr("parameters", count_parameters(build_model(params["model"], settings)))
        result = train_model(params["model"], data, folder.trial(trial.number).root, settings,
                             extra_callbacks=[pruning_callback(trial)])
        trial.set_user_attr("trial_val_loss", float(result.history["val_loss"].min()))
        trial.set_user_attr("best_path", str(result.best_path))
        return reference_val_loss(result.best_path, data, config)

    return objective


def open_study(out: Path, config: Config, models: list[str], architecture: bool = False) -> optuna.Study:
    """Create or reopen ``out/study.db``; a reopened study must have been run with the same config, models and
    search space."""
    import optuna

    db = RunFolder(out).study
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name=STUDY_NAME, direction="minimize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
                                load_if_exists=True)
    signature = {"config": config.model_dump(mode="json"), "models": models, "architecture": architecture}
    defaults = {"architecture": False}  # what a study of an earlier version, which lacks the key, searched
    if not study.trials:
        for key, value in signature.items():
            study.set_user_attr(key, value)
    elif {key: study.user_attrs.get(key, defaults.get(key)) for key in signature} != signature:
        raise AffectkitError(f"{db} was started with other settings or models; rerun it with the same ones to "
                             "continue it, or tune into a new --out folder.")
    # Seeded by how far the study got, so a resumed run does not redraw the first run's random start-up points.
    study.sampler = optuna.samplers.TPESampler(seed=config.seed + len(study.trials))
    return study


def fail_stale_trials(study: optuna.Study) -> None:
    """Trials left running by a killed process would never finish; one process drives a study folder at a time."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)


def plot_tuning_history(trials: list[FrozenTrial], path: Path) -> Path:
    """Objective per finished trial (pruned ones at their last reported value) and the best value so far."""
    import matplotlib
    import numpy as np
    from optuna.trial import TrialState

    matplotlib.use("Agg")  # written to a file, often on a machine without a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    ax.scatter([t.number for t in complete], [t.value for t in complete], color="tab:blue", label="complete")
    ax.scatter([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
               color="tab:grey", marker="x", label="pruned (last per-epoch val_loss)")
    if complete:
        best = np.minimum.accumulate([t.value for t in complete])
        ax.step([t.number for t in complete], best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation loss")
    ax.set_title(f"Tuning history ({len(complete)} complete, {len(pruned)} pruned)")
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_architectures(trials: list[FrozenTrial], path: Path) -> Path | None:
    """The architecture search's result: each finished custom-CNN trial's objective against its parameter count,
    marked by attention and sized by convolutions per stage, the best one ringed; None without such trials."""
    import matplotlib
    from optuna.trial import TrialState

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    searched = [t for t in trials if "cnn_stages" in t.params and "parameters" in t.user_attrs
                and (t.state == TrialState.COMPLETE or (t.state == TrialState.PRUNED and t.intermediate_values))]
    if not searched:
        return None

    def objective(t: FrozenTrial) -> float:
        return t.value if t.state == TrialState.COMPLETE else t.intermediate_values[max(t.intermediate_values)]

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for attention, marker in zip(ATTENTION, "osD^"):
        for state, filled in ((TrialState.COMPLETE, True), (TrialState.PRUNED, False)):
            group = [t for t in searched if t.params["attention"] == attention and t.state == state]
            if group:
                ax.scatter([t.user_attrs["parameters"] for t in group], [objective(t) for t in group],
                           s=[40 * t.params["cnn_convs_per_stage"] for t in group], marker=marker,
                           facecolors=None if filled else "none", edgecolors=f"C{ATTENTION.index(attention)}",
                           color=f"C{ATTENTION.index(attention)}",
                           label=f"attention {attention}" + ("" if filled else " (pruned)"))
    complete = [t for t in searched if t.state == TrialState.COMPLETE]
    if complete:
        best = min(complete, key=objective)
        ax.scatter([best.user_attrs["parameters"]], [best.value], s=300, facecolors="none", edgecolors="red",
                   label=f"best: {best.params['cnn_stages']} stages from {best.params['cnn_base_width']} channels")
    for t in searched:
        ax.annotate(str(t.number), (t.user_attrs["parameters"], objective(t)), fontsize=7, alpha=0.6)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # the minor labels of a log axis overlap
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation loss")
    ax.set_title("Custom CNN architectures searched (marker size: convolutions per stage)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


@dataclass(frozen=True)
class TuningResult:
    best_config: Path  # best_config.yaml, for ``affectkit train --config``
    best_trial: Path  # best_trial.json: the summary below
    history: Path  # tuning_history.png
    summary: dict  # trial, model, params, value, trial_val_loss, best_path, parameters, trials (counts by state)
    architectures: Path | None = None  # architecture_search.png, where the custom CNN's architecture was searched


def write_results(study: optuna.Study, folder: RunFolder, config: Config) -> TuningResult:
    from optuna.trial import TrialState

    plot_tuning_history(study.trials, folder.tuning_history)
    architectures = plot_architectures(study.trials, folder.root / "architecture_search.png")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE and math.isfinite(t.value)]
    if not complete:
        raise AffectkitError(f"No trial of {folder.study} completed (all pruned or failed): no best config.")
    best = min(complete, key=lambda t: t.value)
    model = best.params["model"]
    header = (f"# Best of {len(complete)} completed tuning trials (trial {best.number}, validation loss "
              f"{best.value:.4f}).\n# affectkit train --model {model} --config {folder.best_config.name}\n")
    body = yaml.safe_dump(trial_config(config, best.params).model_dump(mode="json"), sort_keys=False)
    folder.best_config.write_text(header + body)
    summary = {"trial": best.number, "model": model, "params": best.params, "value": best.value,
               "trial_val_loss": best.user_attrs.get("trial_val_loss"), "best_path": best.user_attrs.get("best_path"),
               "parameters": best.user_attrs.get("parameters"),
               "trials": {s.name.lower(): n for s in TrialState if (n := sum(t.state == s for t in study.trials))}}
    folder.best_trial.write_text(json.dumps(summary, indent=2))
    return TuningResult(folder.best_config, folder.best_trial, folder.tuning_history, summary, architectures)


def run_study(data: Path, out: Path, config: Config, n_trials: int, models: list[str], timeout_s: float | None = None,
              quiet: bool = False, architecture: bool = False) -> TuningResult:
    """Run (or continue) the study in ``out`` until it holds ``n_trials`` finished trials or ``timeout_s`` passes;
    returns where its results are, with the best trial's summary. ``architecture``: also search the custom CNN's
    architecture (stages, first width, convolutions per stage, attention), a small neural architecture search."""
    import optuna
    from optuna.trial import TrialState

    from affectkit.data.datamodule import prepare_data
    from affectkit.models.factory import resolve_spec
    from affectkit.training.hardware import check_hardware

    with silenced(quiet):
        if not models:
            raise AffectkitError("Give at least one model to tune.")
        check_hardware(config)
        models = [resolve_spec(m).key for m in models]  # fail on a typo before any training
        if architecture and "custom_cnn" not in models:
            raise AffectkitError("--architecture searches the custom CNN's architecture: add custom_cnn to --models.")
        folder = RunFolder(out)
        folder.root.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.INFO if reporter().progress else optuna.logging.WARNING)
        study = open_study(out, config, models, architecture)
        fail_stale_trials(study)
        # Complete and pruned trials count towards the total; failed ones are retried.
        remaining = n_trials - len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        if remaining > 0:
            prepared = prepare_data(data, config, splits_path=folder.splits)
            study.optimize(make_objective(prepared, folder, config, models, architecture), n_trials=remaining,
                           timeout=timeout_s, gc_after_trial=True)
        return write_results(study, folder, config)
