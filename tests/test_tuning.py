import json
from types import SimpleNamespace

import optuna
import pytest
import torch
import typer
from optuna.trial import TrialState
from typer.testing import CliRunner

from affectkit.config import load_config
from affectkit.data.datamodule import prepare_data
from affectkit.errors import AffectkitError
from affectkit.training.trainer import train_model
from affectkit.cli import app
from affectkit.pipeline.tuning import pruning_callback


def _cli() -> typer.Typer:
    return app


def _finished(out) -> int:
    study = optuna.load_study(study_name="affectkit", storage=f"sqlite:///{out / 'study.db'}")
    return len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))


def test_tune_writes_a_usable_best_config_and_resumes(demo_dir, tmp_path, tiny_config):
    base = tiny_config.to_yaml(tmp_path / "base.yaml")
    out = tmp_path / "tune"
    args = ["tune", str(demo_dir), "--out", str(out), "--models", "custom_cnn", "--config", str(base),
            "--epochs", "1", "--fine-tune-epochs", "0", "--img-size", "32", "--quiet"]
    runner = CliRunner()
    result = runner.invoke(_cli(), [*args, "--trials", "3"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert _finished(out) == 3
    best = json.loads((out / "best_trial.json").read_text())
    assert best["model"] == "custom_cnn" and best["value"] > 0
    assert set(best["params"]) >= {"learning_rate", "fine_tune_lr", "dropout_scale", "head_width",
                                   "loss.valence_weight", "loss.arousal_weight"}
    assert (out / "tuning_history.png").stat().st_size > 5_000

    config = load_config(out / "best_config.yaml")
    assert config.learning_rate == pytest.approx(best["params"]["learning_rate"])
    assert config.loss.valence_weight == pytest.approx(best["params"]["loss.valence_weight"])
    run = tmp_path / "retrain"
    data = prepare_data(demo_dir, config, splits_path=run / "splits.csv", progress=False)
    assert len(train_model("custom_cnn", data, run, config, quiet=True).history) == 1

    result = runner.invoke(_cli(), [*args, "--trials", "4"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert _finished(out) == 4

    # Other models change the search space: the old study cannot be continued with them.
    result = runner.invoke(_cli(), [*args, "--trials", "5", "--models", "resnet50"])
    assert isinstance(result.exception, AffectkitError)
    assert _finished(out) == 4


def test_architecture_search_draws_custom_cnns_and_the_best_one_retrains(demo_dir, tmp_path, tiny_config):
    base = tiny_config.to_yaml(tmp_path / "base.yaml")
    out = tmp_path / "nas"
    args = ["tune", str(demo_dir), "--out", str(out), "--models", "custom_cnn", "--config", str(base),
            "--epochs", "1", "--fine-tune-epochs", "0", "--img-size", "32", "--quiet", "--architecture"]
    runner = CliRunner()
    result = runner.invoke(_cli(), [*args, "--trials", "3"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    study = optuna.load_study(study_name="affectkit", storage=f"sqlite:///{out / 'study.db'}")
    drawn = {(t.params["cnn_stages"], t.params["cnn_base_width"], t.params["cnn_convs_per_stage"],
              t.params["attention"]) for t in study.trials}
    assert len(drawn) > 1  # three trials, not one architecture
    assert all(t.user_attrs["parameters"] > 0 for t in study.trials)
    assert (out / "architecture_search.png").stat().st_size > 5_000

    best = json.loads((out / "best_trial.json").read_text())
    config = load_config(out / "best_config.yaml")
    params = best["params"]
    assert config.cnn_widths == [params["cnn_base_width"] * 2 ** i for i in range(params["cnn_stages"])]
    assert (config.cnn_convs_per_stage, config.attention) == (params["cnn_convs_per_stage"], params["attention"])
    run = tmp_path / "retrain"
    data = prepare_data(demo_dir, config, splits_path=run / "splits.csv", progress=False)
    retrained = train_model("custom_cnn", data, run, config, quiet=True)
    assert retrained.parameters == best["parameters"]

    # The search space is part of the study: continuing it without --architecture is refused.
    result = runner.invoke(_cli(), [*args[:-1], "--trials", "4"])
    assert isinstance(result.exception, AffectkitError) and "other settings" in str(result.exception)
    result = runner.invoke(_cli(), [*args, "--trials", "4", "--models", "resnet50", "--out", str(tmp_path / "x")])
    assert isinstance(result.exception, AffectkitError) and "add custom_cnn to --models" in str(result.exception)


def test_the_tuning_yardstick_scores_the_votes_where_trials_learn_them(demo_dir, voted_manifest, tmp_path,
                                                                        tiny_config):
    from affectkit.evaluation.evaluator import predict_split
    from affectkit.models import build_model, load_model, save_model
    from affectkit.pipeline.tuning import reference_val_loss
    from affectkit.training.losses import multitask_loss

    torch.manual_seed(0)
    model = save_model(build_model("custom_cnn", tiny_config), tmp_path / "best_CustomCNN", tiny_config)
    voted = prepare_data(voted_manifest, tiny_config, splits_path=tmp_path / "voted.csv", progress=False)
    val = voted.positions("val")
    pred = predict_split(load_model(model)[0], voted, val)
    va = torch.from_numpy(pred.valence_arousal)

    def towards(targets) -> float:
        return float(multitask_loss(torch.from_numpy(pred.logits), va[:, 0], va[:, 1], torch.from_numpy(targets[val]),
                                    torch.from_numpy(voted.valence_arousal[val]), tiny_config.loss)[0])

    votes, classes = towards(voted.expression_distribution), towards(voted.expression)
    assert votes != classes
    assert reference_val_loss(model, voted, tiny_config.override(label_distribution=True)) == votes
    assert reference_val_loss(model, voted, tiny_config) == classes


class _FakeTrial:
    def __init__(self, prune_at: int):
        self.prune_at = prune_at
        self.reports: list[tuple[float, int]] = []

    def report(self, value: float, step: int) -> None:
        self.reports.append((value, step))

    def should_prune(self) -> bool:
        return len(self.reports) >= self.prune_at


def test_pruning_callback_reports_each_validation_and_raises_when_told():
    trial = _FakeTrial(prune_at=3)
    callback = pruning_callback(trial)
    trainer = SimpleNamespace(sanity_checking=False, callback_metrics={"val_loss": torch.tensor(2.0)})
    callback.on_validation_end(trainer, None)
    trainer.callback_metrics["val_loss"] = torch.tensor(1.5)
    callback.on_validation_end(trainer, None)  # a new phase's trainer: the step keeps counting
    with pytest.raises(optuna.TrialPruned):
        callback.on_validation_end(trainer, None)
    assert trial.reports == [(2.0, 1), (1.5, 2), (1.5, 3)]


def test_pruning_callback_ignores_sanity_checks():
    trial = _FakeTrial(prune_at=1)
    trainer = SimpleNamespace(sanity_checking=True, callback_metrics={"val_loss": torch.tensor(1.0)})
    pruning_callback(trial).on_validation_end(trainer, None)
    assert trial.reports == []


def test_trials_a_killed_run_left_running_are_failed_on_reopening(tmp_path, tiny_config):
    from affectkit.pipeline.tuning import fail_stale_trials, open_study

    study = open_study(tmp_path, tiny_config, ["custom_cnn"])
    study.ask()
    fail_stale_trials(open_study(tmp_path, tiny_config, ["custom_cnn"]))
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]


def test_valence_arousal_loss_weights_are_searched_only_where_the_data_has_them():
    from affectkit.pipeline.tuning import sample_params

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    weights = {"loss.valence_weight", "loss.arousal_weight"}
    assert weights <= set(sample_params(study.ask(), ["custom_cnn"]))  # the demo faces: classes and valence/arousal
    expression_only = sample_params(study.ask(), ["custom_cnn"], valence_arousal=False)  # FER2013, RAF-DB, CK+
    assert not weights & set(expression_only) and "learning_rate" in expression_only
