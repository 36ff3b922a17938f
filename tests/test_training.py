import dataclasses
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import softmax

from affectkit.config import CLASS_NAMES, NO_EXPRESSION, Config, LossConfig
from affectkit.data.datamodule import normalise, prepare_data
from affectkit.evaluation.card import render_card
from affectkit.inference.backends import OnnxBackend
from affectkit.inference.export import export_onnx
from affectkit.models import build_model, load_model
from affectkit.models.factory import ABSENT_CLASS_LOGIT
from affectkit.training import module as module_mod
from affectkit.training.losses import multitask_loss
from affectkit.training.trainer import MAX_EPOCH_STRETCH, phase2_epochs, plan_phases, train_model


def _data(demo_dir, run, config):
    return prepare_data(demo_dir, config, splits_path=run / "splits.csv", progress=False)


def _val_loss(model, data, config, targets: np.ndarray | None = None) -> float:
    """The validation loss of ``model`` over the whole split at once (towards ``targets``, by default the classes)."""
    val = data.positions("val")
    with torch.no_grad():
        logits, v, a = model(torch.from_numpy(normalise(np.asarray(data.images[val]))))
    targets = data.expression if targets is None else targets
    loss, _ = multitask_loss(logits, v, a, torch.from_numpy(targets[val]),
                             torch.from_numpy(data.valence_arousal[val]), config.loss)
    return float(loss)


@pytest.mark.parametrize("name", ["custom_cnn", "efficientnet_b0", "resnet50"])
def test_training_lowers_the_loss_and_keeps_the_best_model(name, demo_dir, tmp_path, tiny_config):
    config = tiny_config.override(epochs=5, fine_tune_epochs=2)
    data = _data(demo_dir, tmp_path, config)
    result = train_model(name, data, tmp_path, config, quiet=True)
    h = result.history
    assert list(h["epoch"]) == list(range(1, len(h) + 1))
    assert set(h["phase"]) == ({1} if name == "custom_cnn" else {1, 2})
    phase1 = h[h.phase == 1]["train_loss"]  # a randomly initialised backbone jolts the loss when it is unfrozen
    assert phase1.iloc[-2:].min() < phase1.iloc[0]
    assert (tmp_path / f"{result.name}_training_history.png").stat().st_size > 10_000

    # The saved best model is exactly the best epoch's model: its validation loss recomputes to the recorded one.
    model, meta = load_model(result.best_path)
    assert meta["best"]["val_loss"] == pytest.approx(h["val_loss"].min(), abs=1e-6)
    assert _val_loss(model, data, config) == pytest.approx(meta["best"]["val_loss"], rel=1e-4)


def test_a_training_split_one_face_past_whole_batches_trains(demo_dir, tmp_path, tiny_config):
    """An epoch ending on a batch of one face stopped training (the head's BatchNorm cannot normalise one sample in
    training mode); that face sits the epoch out instead, in phase 1 on stored features as in phase 2's loader."""
    train = len(_data(demo_dir, tmp_path, tiny_config).positions("train"))
    config = tiny_config.override(batch_size=train - 1, epochs=1, fine_tune_epochs=1)
    result = train_model("resnet50", _data(demo_dir, tmp_path, config), tmp_path, config, quiet=True)
    assert list(result.history["phase"]) == [1, 2]


def test_under_ddp_the_lone_last_batch_is_each_processs_own(demo_dir, tmp_path, tiny_config):
    """Each of the processes sharing an epoch gets ceil(n / ranks) faces: it is their count that may leave one face
    alone in the last batch, not the whole split's."""
    from types import SimpleNamespace

    from affectkit.data.datamodule import AffectDataModule

    train = len(_data(demo_dir, tmp_path, tiny_config).positions("train"))
    assert train % 2 == 0  # the premise: with an odd split both counts leave one face alone alike
    per_rank = train // 2
    module = AffectDataModule(_data(demo_dir, tmp_path, tiny_config), tiny_config.override(batch_size=per_rank - 1))
    assert not module.train_dataloader().drop_last  # one process: the whole split, no lone face
    module.trainer = SimpleNamespace(world_size=2)
    assert module.train_dataloader().drop_last


def test_a_saved_model_given_as_weights_is_fine_tuned_whole(demo_dir, tmp_path, tiny_config):
    """--weights best_CustomCNN.safetensors: the run goes on from that network, heads included (it used to start
    the custom CNN from scratch without a word)."""
    config = tiny_config.override(epochs=4)
    data = _data(demo_dir, tmp_path, config)
    first = train_model("custom_cnn", data, tmp_path / "first", config, quiet=True)
    # A learning rate too small to move a weight: the second run keeps the first run's best network, heads included
    # (only BatchNorm's running statistics move with the batches it sees).
    again = train_model("custom_cnn", data, tmp_path / "again", config.override(epochs=1, learning_rate=1e-12),
                        weights=first.best_path, quiet=True)
    before, _ = load_model(first.best_path)
    after, meta = load_model(again.best_path)
    assert meta["initial_weights"] == "file"
    assert meta["initial_weights_detail"].startswith(f"the whole network (backbone and heads) from {first.best_path}")
    # How the training faces frame their face, measured on a sample of them: the margin predict crops faces at.
    assert meta["face_margin_faces"] >= 8 and 0 <= meta["face_margin"] < 0.2
    for (name, kept), (_, started) in zip(after.named_parameters(), before.named_parameters()):
        assert torch.allclose(kept, started, atol=1e-7), name


def test_phase_one_freezes_backbone_weights_and_batchnorm(demo_dir, tmp_path, tiny_config):
    config = tiny_config.override(epochs=2, fine_tune_epochs=0)
    data = _data(demo_dir, tmp_path, config)
    torch.manual_seed(0)
    reference = build_model("resnet50", config).state_dict()
    train_model("resnet50", data, tmp_path, config, quiet=True)
    trained, _ = load_model(tmp_path / "best_ResNet50")
    after = trained.state_dict()
    backbone = [k for k in reference if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)
    assert all(torch.equal(reference[k], after[k]) for k in backbone)
    assert not torch.equal(reference["head.trunk.0.weight"], after["head.trunk.0.weight"])


def test_early_stopping_ends_a_run_that_cannot_improve(demo_dir, tmp_path, tiny_config, monkeypatch):
    def flat_validation(self, batch, batch_idx):
        self.log("val_loss", torch.tensor(1.0), on_epoch=True, batch_size=len(batch[0]))

    monkeypatch.setattr(module_mod.AffectModule, "validation_step", flat_validation)
    config = tiny_config.override(epochs=30, early_stopping_patience=3)
    result = train_model("custom_cnn", _data(demo_dir, tmp_path, config), tmp_path, config, quiet=True)
    assert len(result.history) == 4  # the first epoch sets the best, three more without improvement


def test_cosine_schedule_anneals_each_phase_over_its_budget(demo_dir, tmp_path, tiny_config):
    config = tiny_config.override(epochs=4, lr_schedule="cosine", learning_rate=1e-3, min_lr=1e-6)
    lr = train_model("custom_cnn", _data(demo_dir, tmp_path, config), tmp_path, config, quiet=True).history["lr"]
    assert len(lr) == 4 and (lr.diff().iloc[1:] < 0).all()  # falls every epoch, not on plateaus
    assert lr.iloc[0] <= 1e-3 and lr.iloc[-1] < 0.2e-3


def test_same_seed_same_first_epoch_loss(demo_dir, tmp_path, tiny_config):
    config = tiny_config.override(epochs=1, num_workers=2)
    losses = []
    for run in ("a", "b"):
        out = tmp_path / run
        losses.append(train_model("custom_cnn", _data(demo_dir, out, config), out, config, quiet=True).history)
    assert losses[0]["train_loss"].iloc[0] == losses[1]["train_loss"].iloc[0]
    assert pd.read_csv(tmp_path / "a" / "splits.csv").equals(pd.read_csv(tmp_path / "b" / "splits.csv"))


def test_run_killed_in_phase_two_resumes_there(demo_dir, tmp_path):
    from typer.testing import CliRunner

    from affectkit.cli import app

    out = tmp_path / "run"
    args = ["train", "--model", "efficientnet_b0", "--data", str(demo_dir), "--out", str(out), "--epochs", "2",
            "--fine-tune-epochs", "4", "--img-size", "32", "--batch-size", "16", "--workers", "0", "--quiet",
            "--no-evaluate"]
    # Killed for real, as a process; resumed in this one (the same command: it saves the seconds of a fresh import).
    proc = subprocess.Popen([sys.executable, "-m", "affectkit.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    ckpt = out / "checkpoints" / "EfficientNetB0" / "phase2" / "last.ckpt"
    deadline = time.time() + 240
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ckpt.exists(), proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = pd.read_csv(out / "EfficientNetB0_history.csv")
    assert set(before["phase"]) == {1, 2} and len(before) < 6
    assert not list(out.rglob("*.tmp"))

    done = CliRunner().invoke(app, [*args, "--resume"])
    assert done.exit_code == 0, done.output[-2000:]
    after = pd.read_csv(out / "EfficientNetB0_history.csv")
    assert list(after["epoch"]) == [1, 2, 3, 4, 5, 6]
    assert list(after["phase"]) == [1, 1, 2, 2, 2, 2]
    phase1 = after[after.phase == 1].reset_index(drop=True)
    assert phase1.equals(before[before.phase == 1].reset_index(drop=True))  # phase 1 was not redone
    assert (out / "checkpoints" / "EfficientNetB0" / "done").is_file()
    # Resumed once more, the finished model is kept, and even --quiet says so (a log should show it).
    again = CliRunner().invoke(app, [*args, "--resume"])
    assert again.exit_code == 0 and "EfficientNetB0: already trained in" in " ".join(again.stderr.split())
    assert pd.read_csv(out / "EfficientNetB0_history.csv").equals(after)


def test_phase_one_checkpoints_leave_out_the_frozen_backbone_and_resume_checks_it(demo_dir, tmp_path, tiny_config):
    import lightning as L

    from affectkit.errors import AffectkitError
    from affectkit.training.module import AffectModule

    config = tiny_config.override(epochs=2, fine_tune_epochs=0)
    train_model("resnet50", _data(demo_dir, tmp_path, config), tmp_path, config, quiet=True)
    ckpt_path = tmp_path / "checkpoints" / "ResNet50" / "phase1" / "last.ckpt"
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert not any(k.startswith("model.backbone.") for k in checkpoint["state_dict"])
    assert any(k.startswith("model.head.") for k in checkpoint["state_dict"])

    def fresh_module(seed: int) -> AffectModule:
        L.seed_everything(seed, verbose=False)
        model = build_model("resnet50", config)
        model.set_backbone_trainable(False)
        return AffectModule(model, config, 1e-3)

    same = fresh_module(config.seed)  # a resumed run rebuilds the same starting backbone
    restored = dict(checkpoint, state_dict=dict(checkpoint["state_dict"]))
    same.on_load_checkpoint(restored)
    same.load_state_dict(restored["state_dict"])  # strict: the backbone was filled back in
    with pytest.raises(AffectkitError, match="same --weights"):
        fresh_module(config.seed + 1).on_load_checkpoint(dict(checkpoint, state_dict=dict(checkpoint["state_dict"])))


def test_auto_precision_follows_the_hardware(monkeypatch):
    from affectkit.config import Config
    from affectkit.training import hardware

    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    assert hardware.resolve_accelerator(Config()) == ("cpu", "bf16-mixed")
    config = Config(img_size=32)
    assert hardware.resolve_accelerator(config, build_model("resnet50", config)) == ("cpu", "bf16-mixed")
    # depthwise convolutions train slower in bf16 on a CPU
    assert hardware.resolve_accelerator(config, build_model("efficientnet_b0", config)) == ("cpu", "32-true")
    assert hardware.resolve_accelerator(Config(precision="32")) == ("cpu", "32")
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    assert hardware.resolve_accelerator(Config()) == ("cpu", "32-true")


def test_bf16_autocast_training_learns_and_keeps_fp32_weights(demo_dir, tmp_path, tiny_config):
    config = tiny_config.override(epochs=4, precision="bf16-mixed")
    data = _data(demo_dir, tmp_path, config)
    result = train_model("custom_cnn", data, tmp_path, config, quiet=True)
    losses = result.history["train_loss"]
    assert losses.iloc[-2:].min() < losses.iloc[0]
    for split, column in (("train", "train_acc"), ("val", "val_acc")):  # a whole number of images
        correct = result.history[column] * len(data.positions(split))
        np.testing.assert_allclose(correct, correct.round(), atol=1e-3)
    model, _ = load_model(result.best_path)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_phase_one_on_stored_features_trains_exactly_as_the_naive_way(demo_dir, tmp_path, tiny_config, monkeypatch):
    """Without augmentation (one stored view, the clean one) the stored-features path feeds the head the same inputs
    in the same order, with the same random stream, as the naive way: with the same runtime the epochs are identical.
    (onnxruntime, the fp32 CPU runtime, differs in the last float bits; see the next test.)"""
    from affectkit.models.runner import torch_runner
    from affectkit.training import features

    monkeypatch.setattr(features, "make_runner", lambda model, size, **_: torch_runner(model.backbone))
    still = tiny_config.augmentation.model_copy(update=dict(
        rotation_range=0, width_shift_range=0, height_shift_range=0, zoom_range=0, shear_range=0,
        horizontal_flip=False))
    config = tiny_config.override(epochs=3, fine_tune_epochs=0, phase1_views=0, augmentation=still)
    histories = {}
    for cached in (False, True):
        run = tmp_path / str(cached)
        data = _data(demo_dir, run, config)
        histories[cached] = train_model("resnet50", data, run, config.override(phase1_feature_cache=cached),
                                        quiet=True).history
    assert (tmp_path / "True" / "checkpoints" / "ResNet50" / "phase1_train_features.npy").is_file()
    assert not (tmp_path / "False" / "checkpoints" / "ResNet50" / "phase1_train_features.npy").exists()
    columns = ["train_loss", "val_loss", "train_acc", "val_acc", "val_valence_mae", "val_arousal_mae"]
    pd.testing.assert_frame_equal(histories[True][columns], histories[False][columns])


def test_label_distribution_trains_and_validates_towards_the_votes(demo_dir, voted_manifest, tmp_path, tiny_config):
    from affectkit.data.datamodule import AffectDataModule
    from affectkit.training.features import feature_loaders

    config = tiny_config.override(epochs=1, fine_tune_epochs=1, label_distribution=True)
    data = prepare_data(voted_manifest, config, splits_path=tmp_path / "splits.csv", progress=False)
    votes = data.expression_distribution
    assert votes.shape == (len(data.records), 8) and (votes.argmax(1) == data.expression).all()
    assert np.allclose(np.sort(votes, axis=1)[:, -2:], [0.3, 0.7])

    # What the loaders hand the loss: the distributions with the option, the classes without it.
    on, off = AffectDataModule(data, config), AffectDataModule(data, config.override(label_distribution=False))
    val = data.positions("val")
    assert torch.equal(next(iter(on.val_dataloader()))[1], torch.from_numpy(votes[val[:16]]))
    assert torch.equal(next(iter(off.val_dataloader()))[1], torch.from_numpy(data.expression[val[:16]]))
    assert next(iter(on.train_dataloader()))[1].shape == (16, 8)
    stored_train, stored_val = feature_loaders(on, np.zeros((1, len(data.positions("train")), 4), np.float32),
                                               np.zeros((len(val), 4), np.float32))
    assert torch.equal(next(iter(stored_val))[1], torch.from_numpy(votes[val]))
    assert next(iter(stored_train))[1].dtype == torch.float32
    # Class frequencies count vote shares: each class is some faces' second choice.
    assert np.allclose(on.class_frequencies(), votes[data.positions("train")].sum(0))
    # Data without votes: the option changes nothing.
    plain = _data(demo_dir, tmp_path / "plain", config)
    assert plain.expression_distribution is None
    assert AffectDataModule(plain, config).dataset("val").targets is plain.expression

    histories = {}
    for distribution in (True, False):
        run = tmp_path / str(distribution)
        result = train_model("resnet50", data, run, config.override(label_distribution=distribution), quiet=True)
        histories[distribution] = result.history
    model, meta = load_model(result.best_path.parent.parent / "True" / result.best_path.name)
    # The recorded validation loss is the one towards the votes (not the classes, which a barely trained head scores
    # nearly alike).
    assert _val_loss(model, data, config, votes) == pytest.approx(meta["best"]["val_loss"], abs=1e-6)
    assert abs(_val_loss(model, data, config) - meta["best"]["val_loss"]) > 1e-4
    assert not np.allclose(histories[True]["train_loss"], histories[False]["train_loss"])
    assert histories[True]["train_acc"].between(0, 1).all()  # scored by each face's most voted class


def test_faces_without_a_class_train_the_valence_arousal_heads_only(partial_manifest, tmp_path, tiny_config):
    from affectkit.data.datamodule import AffectDataModule
    from affectkit.errors import AffectkitError

    config = tiny_config.override(epochs=1, fine_tune_epochs=1)
    data = prepare_data(partial_manifest, config, splits_path=tmp_path / "splits.csv", progress=False)
    unclassed = data.expression == NO_EXPRESSION
    assert unclassed.sum() == 32 and np.isfinite(data.valence_arousal[unclassed]).all()
    for split in ("train", "val", "test"):  # stratified as a group of their own
        assert unclassed[data.positions(split)].any()
    module = AffectDataModule(data, config)
    train = data.positions("train")
    assert np.array_equal(module.class_frequencies(),
                          np.bincount(data.expression[train][~unclassed[train]], minlength=8))
    sampler = AffectDataModule(data, config.override(weighted_sampler=True))._balanced_sampler(module.dataset("train"))
    draws = np.asarray(sampler.weights)
    assert draws[unclassed[train]].sum() / draws.sum() == pytest.approx(unclassed[train].mean())

    result = train_model("resnet50", data, tmp_path, config, quiet=True)
    assert set(result.history["phase"]) == {1, 2} and np.isfinite(result.history["train_loss"]).all()
    model, meta = load_model(result.best_path)
    assert _val_loss(model, data, config) == pytest.approx(meta["best"]["val_loss"], rel=1e-4)
    val = data.positions("val")
    classed = val[~unclassed[val]]
    with torch.no_grad():
        logits, _, _ = model(torch.from_numpy(normalise(np.asarray(data.images[classed]))))
    accuracy = float((logits.argmax(1).numpy() == data.expression[classed]).mean())
    assert meta["best"]["val_acc"] == pytest.approx(accuracy, abs=1e-6)  # over the faces with a class only

    val_unclassed = data.splits.copy()
    val_unclassed.loc[val_unclassed["split"] == "val", "split"] = "train"
    val_unclassed.loc[np.flatnonzero(unclassed)[:8], "split"] = "val"
    unclassed_val = dataclasses.replace(data, splits=val_unclassed)
    with pytest.raises(AffectkitError, match="No training or no validation face has an expression class"):
        train_model("resnet50", unclassed_val, tmp_path, config.override(selection_metric="val_macro_f1"),
                    quiet=True)
    assert result.best_path.is_file()  # refused before the earlier run's model was cleared


def test_the_recorded_validation_loss_is_the_whole_splits(partial_manifest, tmp_path, tiny_config):
    """The epoch's validation loss, which chooses the kept model, is the loss of the whole split at once, where a
    mean of per-batch losses is not: faces partly annotated, classes weighted, valence/arousal scored by CCC, label
    smoothing and a class the data lacks, over several validation batches. The tuning's yardstick
    (``reference_val_loss``) computes the same number for the kept model."""
    from affectkit.pipeline.tuning import reference_val_loss

    table = pd.read_csv(partial_manifest)
    table = table[table["expression"] != "Contempt"].reset_index(drop=True)
    classed = table.index[table["expression"].notna()]
    table.loc[classed[::3], ["valence", "arousal"]] = np.nan  # some faces have a class only
    table.to_csv(tmp_path / "faces.csv", index=False)
    config = tiny_config.override(epochs=3, fine_tune_epochs=0, batch_size=4,
                                  loss=LossConfig(regression="ccc", class_weighting=True, label_smoothing=0.1))
    data = prepare_data(tmp_path / "faces.csv", config, splits_path=tmp_path / "splits.csv", progress=False)
    assert len(data.positions("val")) > 2 * config.batch_size
    result = train_model("custom_cnn", data, tmp_path, config, quiet=True)
    model, meta = load_model(result.best_path)
    assert not bool(model.output_classes[7])  # no Contempt face: not trained on
    assert reference_val_loss(result.best_path, data, config) == pytest.approx(meta["best"]["val_loss"], rel=1e-4)


def test_mixup_keeps_phase_one_on_stored_features_and_mixes_them(demo_dir, tmp_path, tiny_config):
    config = tiny_config.override(epochs=2, fine_tune_epochs=0)
    losses = {}
    for alpha in (0.0, 0.4):
        run = tmp_path / str(alpha)
        mixing = config.override(augmentation=config.augmentation.model_copy(update=dict(mixup_alpha=alpha)))
        losses[alpha] = train_model("resnet50", _data(demo_dir, run, config), run, mixing, quiet=True).history
        assert (run / "checkpoints" / "ResNet50" / "phase1_train_features.npy").is_file()
    assert np.isfinite(losses[0.4]["train_loss"]).all()
    assert not np.allclose(losses[0.4]["train_loss"], losses[0.0]["train_loss"])


def test_stored_features_are_the_backbone_outputs(demo_dir, tmp_path, tiny_config):
    from affectkit.data.datamodule import AffectDataModule
    from affectkit.training.features import compute_phase1_features

    config = tiny_config.override(phase1_views=2)
    data = _data(demo_dir, tmp_path, config)
    model = build_model("resnet50", config)
    model.set_backbone_trainable(False)
    train, val = compute_phase1_features(model, AffectDataModule(data, config), tmp_path)
    tr = data.positions("train")
    assert train.shape == (3, len(tr), model.num_features) and val.shape == (len(data.positions("val")), model.num_features)
    with torch.no_grad():
        expected = model.backbone(torch.from_numpy(normalise(np.asarray(data.images[tr])))).numpy()
    np.testing.assert_allclose(train[0], expected, rtol=1e-3, atol=1e-4)  # onnxruntime vs PyTorch
    assert not np.allclose(train[1], train[0], atol=1e-3) and not np.allclose(train[2], train[1], atol=1e-3)
    assert not list(tmp_path.glob("*.tmp"))


def test_folding_batchnorm_keeps_the_backbone_function(tiny_config):
    from affectkit.models.runner import fold_batchnorm

    backbone = build_model("resnet50", tiny_config).backbone.eval()
    folded = fold_batchnorm(backbone)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())  # the original is left as it was
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), backbone(x), rtol=1e-4, atol=1e-5)


def test_epoch_metrics_are_exact_under_bf16_autocast(tiny_config):
    module = module_mod.AffectModule(build_model("custom_cnn", tiny_config), tiny_config, 1e-3)
    batches = [(32, k) for k in (17, 20, 9, 31, 25, 14, 22)] + [(16, 10)]  # (size, correct); 240 images in all
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for n, k in batches:
            labels = torch.zeros(n, dtype=torch.long)
            labels[k:] = 1
            logits = torch.zeros(n, 8)
            logits[:, 0] = 1.0  # predicts class 0 everywhere: right on the first k
            va = torch.full((n, 2), 0.25)
            module._accumulate("val", None, logits, torch.zeros(n), torch.zeros(n), labels, va)
    means = module._means("val")
    assert float(means["acc"].compute()) == pytest.approx(sum(k for _, k in batches) / 240, abs=1e-6)
    assert float(means["valence_mae"].compute()) == pytest.approx(0.25, abs=1e-6)
    module._accumulate("train", torch.tensor(float("nan")), logits, torch.zeros(n), torch.zeros(n), labels, va)
    assert np.isnan(float(module._means("train")["loss"].compute()))  # a diverged loss is not averaged away


def test_compiled_training_matches_eager_and_saves_plain_weights(demo_dir, tmp_path, tiny_config):
    """`compile: true` (torch.compile, inductor) compiles the model in place: it trains like eager (dropout masks
    come from another generator, hence the tolerance) and the saved model has the usual parameter names."""
    from torch._dynamo.utils import counters

    config = tiny_config.override(epochs=1)
    data = _data(demo_dir, tmp_path, config)
    eager = train_model("custom_cnn", data, tmp_path / "eager", config, quiet=True)
    counters.clear()
    compiled = train_model("custom_cnn", data, tmp_path / "compiled", config.override(compile=True), quiet=True)
    assert counters["stats"]["unique_graphs"] > 0
    for column in ("train_loss", "val_loss"):
        np.testing.assert_allclose(compiled.history[column], eager.history[column], rtol=2e-2)
    model, _ = load_model(compiled.best_path)
    assert not any("_orig_mod" in key for key in model.state_dict())


def test_pretrained_fine_tuning_keeps_phase_one_and_the_imagenet_statistics(demo_dir, tmp_path, tiny_config):
    """Phase 1 leaves the ImageNet backbone bit-identical; phase 2 trains its weights but keeps its BatchNorm
    statistics, with the learning rate warming up from a small fraction instead of jumping to fine_tune_lr."""
    from affectkit.models.weights import load_pretrained_weights

    config = tiny_config.override(use_light_models=True, epochs=2, fine_tune_epochs=2, fine_tune_lr=1e-4,
                                  fine_tune_warmup_epochs=2, phase1_feature_cache=False)
    data = _data(demo_dir, tmp_path, config)
    reference = build_model("resnet50", config)
    load_pretrained_weights(reference)
    start = reference.state_dict()

    phase1 = train_model("resnet50", data, tmp_path / "p1", config.override(fine_tune_epochs=0), pretrained=True,
                         quiet=True)
    after1 = load_model(phase1.best_path)[0].state_dict()
    backbone = [k for k in start if k.startswith("backbone.")]
    assert all(torch.equal(start[k], after1[k]) for k in backbone)

    result = train_model("resnet50", data, tmp_path / "p2", config, pretrained=True, quiet=True)
    h = result.history
    assert list(h["phase"]) == [1, 1, 2, 2]
    # A two-epoch warm-up is about half-way at the end of phase 2's first epoch.
    assert 0.3 * config.fine_tune_lr < h["lr"].iloc[2] < 0.8 * config.fine_tune_lr
    model, meta = load_model(result.best_path)
    assert meta["initial_weights"] == "imagenet:registry" and meta["backbone"] == "mobilenetv2_100"
    if meta["best"]["phase"] == 2:  # the kept model is a fine-tuned one: weights moved, statistics did not
        after2 = model.state_dict()
        stats = [k for k in backbone if "running_" in k]
        weights = [k for k in backbone if k.endswith("conv_stem.weight")]
        assert all(torch.equal(start[k], after2[k]) for k in stats)
        assert not all(torch.equal(start[k], after2[k]) for k in weights)


def test_macro_f1_selection_keeps_the_epoch_with_the_best_validation_f1(demo_dir, tmp_path, tiny_config):
    from affectkit.training.module import macro_f1

    confusion = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # third class absent: not averaged as a zero
    assert float(macro_f1(confusion)) == pytest.approx((2 * 3 / 7 + 2 * 2 / 5) / 2)
    config = tiny_config.override(epochs=4, selection_metric="val_macro_f1", optimizer="adamw", weight_decay=0.01)
    result = train_model("custom_cnn", _data(demo_dir, tmp_path, config), tmp_path, config, quiet=True)
    _, meta = load_model(result.best_path)
    assert meta["best"]["selected_by"] == "val_macro_f1"
    assert meta["best"]["val_macro_f1"] == pytest.approx(result.history["val_macro_f1"].max())


def test_phase2_step_minimum_stretches_small_sets_only():
    config = Config(batch_size=32, fine_tune_epochs=20, fine_tune_min_steps=1200)
    assert phase2_epochs(config, 3000) == 20  # 94 steps an epoch: 20 epochs already pass 1,200 steps
    assert phase2_epochs(config, 960) == 40  # 30 steps an epoch
    assert phase2_epochs(config, 100) == MAX_EPOCH_STRETCH * 20  # 4 steps an epoch would need 300 epochs
    assert phase2_epochs(config.override(fine_tune_min_steps=0), 100) == 20


def test_phase2_patience_stretches_as_far_as_its_epochs():
    """A small set's short epochs must not stop phase 2 early in its schedule: the patience covers the same share."""
    config = Config(batch_size=32, epochs=5, fine_tune_epochs=20, fine_tune_min_steps=1200, early_stopping_patience=8)
    two_phase = SimpleNamespace(spec=SimpleNamespace(two_phase=True))

    def patience(train_images: int) -> list[tuple[int, int]]:
        return [(p.epochs, p.patience) for p in plan_phases(two_phase, config, True, train_images)]

    assert patience(3000) == [(5, 8), (20, 8)]
    assert patience(960) == [(5, 8), (40, 16)]
    assert patience(100) == [(5, 8), (60, 24)]
    one_phase = SimpleNamespace(spec=SimpleNamespace(two_phase=False))
    assert [(p.epochs, p.patience) for p in plan_phases(one_phase, config, False, 100)] == [(5, 8)]


def test_weight_averaging_is_what_validation_scores_and_the_best_model_keeps(demo_dir, tmp_path, tiny_config):
    config = tiny_config.override(epochs=4)
    plain = train_model("custom_cnn", _data(demo_dir, tmp_path / "plain", config), tmp_path / "plain", config,
                        quiet=True).history
    averaged_config = config.override(ema_decay=0.99)
    data = _data(demo_dir, tmp_path / "ema", averaged_config)
    result = train_model("custom_cnn", data, tmp_path / "ema", averaged_config, quiet=True)
    averaged = result.history
    # The average only watches training: the same steps give the same training losses, other validation losses.
    assert np.allclose(averaged["train_loss"], plain["train_loss"], rtol=1e-5)
    assert not np.allclose(averaged["val_loss"], plain["val_loss"], rtol=1e-3)

    model, meta = load_model(result.best_path)
    # the averaged weights were kept
    assert _val_loss(model, data, averaged_config) == pytest.approx(meta["best"]["val_loss"], rel=1e-4)

    state = torch.load(tmp_path / "ema" / "checkpoints" / "CustomCNN" / "phase1" / "last.ckpt", map_location="cpu",
                       weights_only=True)["state_dict"]
    trained = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    kept = {k.removeprefix("ema.module."): v for k, v in state.items() if k.startswith("ema.module.")}
    assert kept.keys() == trained.keys()  # a resume restores the average with the weights
    assert not torch.equal(kept["head.expression.weight"], trained["head.expression.weight"])


def test_the_loss_spreads_nothing_onto_classes_the_model_is_not_trained_on():
    torch.manual_seed(0)
    logits, ids = torch.randn(6, 8), torch.tensor([1, 2, 3, 4, 5, 7])
    trained = torch.tensor([False] + [True] * 7)  # no Neutral, as in CK+
    classes = trained.nonzero().flatten()
    va = torch.full((6, 2), float("nan"))
    expected = torch.nn.functional.cross_entropy(logits[:, 1:], ids - 1, label_smoothing=0.1)
    for cfg in (LossConfig(label_smoothing=0.1), LossConfig(label_smoothing=0.1, focal_gamma=0.0)):
        for target in (ids, torch.nn.functional.one_hot(ids, 8).float()):  # class ids, and MixUp's soft targets
            _, parts = multitask_loss(logits, logits[:, 0], logits[:, 0], target, va, cfg, classes=classes)
            assert float(parts["expression_loss"]) == pytest.approx(float(expected), rel=1e-5)
    # The model's masked logit for the absent class changes nothing; over all eight classes it would.
    masked = logits.masked_fill(~trained, ABSENT_CLASS_LOGIT)
    _, parts = multitask_loss(masked, logits[:, 0], logits[:, 0], ids, va, LossConfig(label_smoothing=0.1),
                              classes=classes)
    assert float(parts["expression_loss"]) == pytest.approx(float(expected), rel=1e-5)
    _, unrestricted = multitask_loss(logits, logits[:, 0], logits[:, 0], ids, va, LossConfig(label_smoothing=0.1))
    assert float(unrestricted["expression_loss"]) != pytest.approx(float(expected), rel=1e-3)


def test_a_class_the_training_data_lacks_is_never_predicted(demo_copy, tmp_path, tiny_config):
    annotations = demo_copy / "annotations"
    for path in annotations.glob("*_exp.npy"):
        if int(np.load(path)) == 0:  # every Neutral face goes
            stem = path.name.removesuffix("_exp.npy")
            for part in annotations.glob(f"{stem}_*.npy"):
                part.unlink()
            (demo_copy / "images" / f"{stem}.jpg").unlink()
    config = tiny_config.override(epochs=2, fine_tune_epochs=1)
    data = _data(demo_copy, tmp_path, config)
    assert 0 not in set(data.expression[data.positions("train")])
    # Both phases: the head alone on stored features, then the whole network.
    result = train_model("resnet50", data, tmp_path, config, quiet=True)
    model, meta = load_model(result.best_path)
    assert model.output_classes.tolist() == [False] + [True] * 7
    assert meta["trained_classes"] == list(CLASS_NAMES[1:])
    card = render_card(meta, result.best_path.name)
    assert "probabilities of 8 expressions (Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Contempt), of which " \
           "Neutral always 0 (not in the training data)" in card
    images = torch.from_numpy(normalise(np.asarray(data.images[data.positions("test")])))
    with torch.no_grad():
        probs = torch.softmax(model(images)[0], dim=1)
    assert (probs[:, 0] == 0).all() and torch.allclose(probs.sum(1), torch.ones(len(probs)))
    onnx_logits = OnnxBackend(export_onnx(result.best_path, out=tmp_path / "m.onnx"))(images.numpy())[0]
    assert (softmax(onnx_logits, axis=1)[:, 0] == 0).all()

    # A file saved before models recorded their classes loads as predicting all eight.
    state = {k: v for k, v in model.state_dict().items() if k != "output_classes"}
    fresh = build_model("resnet50", config)
    fresh.set_output_classes([True] * 7 + [False])
    fresh.load_state_dict(state)
    assert fresh.output_classes.all()
