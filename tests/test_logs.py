"""TensorBoard experiment logs: one run per model and phase under RUN/logs, readable back by TensorBoard itself."""

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from affectkit.data.datamodule import prepare_data
from affectkit.training.trainer import train_model


pytestmark = pytest.mark.usefixtures("one_thread")


def _events(folder):
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return accumulator


def test_each_phase_logs_epoch_metrics_learning_rate_and_hyperparameters(demo_dir, tmp_path, tiny_config):
    # The light ResNet50 stand-in: phase 1 on stored backbone features, phase 2 the whole model.
    config = tiny_config.override(epochs=2, fine_tune_epochs=1, use_light_models=True, phase1_views=0)
    data = prepare_data(demo_dir, config, progress=False)
    result = train_model("resnet50", data, tmp_path, config, quiet=True)
    assert result.name == "MobileNetV2"
    history = result.history
    for phase, epochs in ((1, 2), (2, 1)):
        folder = tmp_path / "logs" / "MobileNetV2" / f"phase{phase}"
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1
        events = _events(folder)
        scalars = events.Tags()["scalars"]
        val_loss = [e.value for e in events.Scalars("val_loss")]
        assert val_loss == pytest.approx(list(history[history.phase == phase]["val_loss"]), rel=1e-6)
        assert len(val_loss) == epochs
        for tag in ("train_loss", "train_acc", "val_acc", "val_valence_mae", "val_arousal_mae"):
            assert len(events.Scalars(tag)) == epochs, tag
        rates = {tag.rsplit("/", 1)[-1] for tag in scalars if tag.startswith("lr-")}
        assert rates == ({"head"} if phase == 1 else {"head", "backbone"}), scalars
        assert events.Scalars("hp/best_val_loss")[0].value == pytest.approx(min(val_loss), rel=1e-6)
        assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
        hparams = yaml.safe_load((folder / "hparams.yaml").read_text())
        assert hparams["phase"] == phase and hparams["stored_features"] == (phase == 1)
        assert hparams["loss.valence_weight"] == 0.5 and hparams["max_samples"] == "null"


def test_a_fresh_run_replaces_its_logs_and_the_logs_can_be_turned_off(demo_dir, tmp_path, tiny_config):
    config = tiny_config.override(epochs=1)
    data = prepare_data(demo_dir, config, progress=False)
    for _ in range(2):
        train_model("custom_cnn", data, tmp_path / "on", config, quiet=True)
    folder = tmp_path / "on" / "logs" / "CustomCNN" / "phase1"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1 and len(_events(folder).Scalars("val_loss")) == 1
    train_model("custom_cnn", data, tmp_path / "off", config.override(tensorboard=False), quiet=True)
    assert (tmp_path / "off" / "CustomCNN_history.csv").is_file() and not (tmp_path / "off" / "logs").exists()


def test_the_epoch_line_shows_only_what_the_data_has():
    from affectkit.training.callbacks import epoch_summary

    row = {"train_loss": 1.2, "val_loss": 1.1, "train_acc": 0.5, "val_acc": 0.6, "val_valence_mae": 0.2,
           "val_arousal_mae": 0.3, "lr": 1e-3, "time_s": 2.0}
    assert epoch_summary(row) == "loss 1.200/1.100  acc 0.500/0.600  val MAE v 0.200 a 0.300  lr 1.0e-03  2.0s"
    no_va = row | {"val_valence_mae": float("nan"), "val_arousal_mae": float("nan")}  # FER2013, RAF-DB, CK+
    assert epoch_summary(no_va) == "loss 1.200/1.100  acc 0.500/0.600  lr 1.0e-03  2.0s"
    no_class = row | {"train_acc": float("nan"), "val_acc": float("nan")}  # a valence/arousal model
    assert epoch_summary(no_class) == "loss 1.200/1.100  val MAE v 0.200 a 0.300  lr 1.0e-03  2.0s"


def test_a_log_gets_the_epoch_lines_and_notes_without_bar_frames(demo_dir, tmp_path, tiny_config):
    import io

    from rich.console import Console

    from affectkit.progress import Reporter, reporting

    terminal = Reporter(Console(file=io.StringIO(), force_terminal=True))
    assert terminal.bars
    log_file = io.StringIO()
    log = Reporter(Console(file=log_file, force_terminal=False, width=160))
    assert log.progress and not log.bars
    config = tiny_config.override(epochs=1, fine_tune_epochs=1, tensorboard=False)
    with reporting(log):
        data = prepare_data(demo_dir, config)
        assert list(log.track(range(3), 3, "counting")) == [0, 1, 2]
        train_model("custom_cnn", data, tmp_path, config)
    lines = log_file.getvalue().splitlines()
    assert lines and all(line.strip() for line in lines), lines  # no blank line a redrawn bar left behind
    assert any(line.startswith("CustomCNN phase 1 epoch 1/1: loss") for line in lines)
    assert not any("━" in line or "train_loss:" in line for line in lines)  # no bar, no Lightning bar's last frame


def test_progress_and_notes_print_their_lines_as_written():
    """A path with brackets in a progress line or a note is text, not Rich markup (a '[/x]' would raise)."""
    import io

    from rich.console import Console

    from affectkit.progress import Reporter

    out = io.StringIO()
    reporter = Reporter(Console(file=out, width=200), progress=True)
    reporter.show("Wrote runs [/x]/metrics.json")
    reporter.note("label_pattern ^(?P<expression>[a-z]+)", style="yellow")
    assert out.getvalue().splitlines() == ["Wrote runs [/x]/metrics.json", "label_pattern ^(?P<expression>[a-z]+)"]
