"""What a GPU run depends on, checked where the suite runs (a CPU): nothing in a training step waits for the device,
the Trainer's and loaders' hardware settings, phase 1's runner placement, and the GPU check script itself."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from affectkit.config import NO_EXPRESSION, Config
from affectkit.data import datamodule
from affectkit.models import build_model
from affectkit.models.runner import make_runner
from affectkit.training.losses import ccc_loss, multitask_loss
from affectkit.training.module import EpochMean
from affectkit.training.trainer import hardware_options

ROOT = Path(__file__).resolve().parents[1]


def _reference(pred, target, kind):
    """The regression loss by boolean indexing: what the weighted masking must equal."""
    mask = torch.isfinite(target)
    if not mask.any():
        return pred.sum() * 0.0
    if kind == "ccc" and mask.sum() > 1:
        return ccc_loss(pred[mask], target[mask])
    return F.mse_loss(pred[mask], target[mask])


@pytest.mark.parametrize("kind", ["mse", "ccc"])
@pytest.mark.parametrize("annotated", [16, 9, 1, 0])
def test_masked_regression_loss_equals_indexing_and_keeps_gradients_finite(kind, annotated):
    from affectkit.config import LossConfig

    generator = torch.Generator().manual_seed(annotated)
    logits = torch.randn(16, 8, generator=generator)
    labels = torch.randint(0, 8, (16,), generator=generator)
    va = torch.rand(16, 2, generator=generator) * 2 - 1
    va[annotated:] = float("nan")
    valence = torch.randn(16, generator=generator, requires_grad=True)
    arousal = torch.randn(16, generator=generator)
    _, parts = multitask_loss(logits, valence, arousal, labels, va, LossConfig(regression=kind))
    expected = _reference(valence, va[:, 0], kind)
    torch.testing.assert_close(parts["valence_loss"], expected, rtol=1e-5, atol=1e-6)
    parts["valence_loss"].backward()
    assert torch.isfinite(valence.grad).all()
    assert (valence.grad[annotated:] == 0).all()  # unannotated images get no gradient
    if annotated:
        assert valence.grad[:annotated].abs().sum() > 0


@pytest.mark.parametrize("targets", ["classes", "votes"])
@pytest.mark.parametrize("stage", ["train", "val"])
def test_a_training_step_never_reads_a_value_back_from_the_device(monkeypatch, stage, targets):
    """A host sync (``.item()``, ``bool(tensor)``, boolean indexing) in the loss or the epoch metrics would make the
    CPU wait for the GPU every step. On the CPU none is visible, so each conversion to a Python value is made to fail.
    The batch mixes faces with and without a class, and with and without valence/arousal."""
    from affectkit.training import module as module_mod

    config = Config(img_size=32)
    module = module_mod.AffectModule(build_model("custom_cnn", config), config, 1e-3)
    images = torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8)
    classes = torch.tensor([0, 3, NO_EXPRESSION, 7, NO_EXPRESSION, 2])
    labels = classes if targets == "classes" else F.one_hot(classes.clamp(min=0), 8).float() * (classes >= 0)[:, None]
    va = torch.rand(6, 2)
    va[3:] = float("nan")

    def refuse(self, *args, **kwargs):
        raise AssertionError("a value was read back from the device inside the step")

    for name in ("item", "__bool__", "__int__", "__float__", "tolist", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    loss = module._step((images, labels, va, None), stage)
    monkeypatch.undo()
    means = module._means(stage)
    assert float(means["valence_mae"].weight) == 3  # annotated images only
    assert float(means["acc"].weight) == 4  # faces with a class only
    if stage == "train":
        assert torch.isfinite(loss) and float(means["loss"].weight) == 6
        assert float(means["loss"].compute()) == pytest.approx(float(loss.detach()))
    else:  # the epoch's loss is computed from the outputs kept, once, after the last step
        assert loss is None and not means["loss"].update_called
        assert len(module.val_outputs.compute()["logits"]) == 6
        # the faces without a class stay out of the confusion matrix that macro-F1 reads
        assert int(module.val_confusion.compute()[:8, :8].sum()) == 4


def test_epoch_mean_weights_batches_and_keeps_a_nan():
    mean = EpochMean()
    mean.update(torch.tensor(3.0) * 2, 2)
    mean.update(torch.tensor(6.0), 1)
    assert float(mean.compute()) == pytest.approx(4.0)
    mean.update(torch.tensor(float("nan")), 1)
    assert torch.isnan(mean.compute())


def test_trainer_hardware_tunes_cudnn_only_on_a_gpu():
    config = Config(img_size=32, accelerator="cpu", precision="32")
    options = hardware_options(config, build_model("custom_cnn", config))
    assert options == {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "precision": "32", "benchmark": False}
    stored = hardware_options(config.override(precision="bf16-mixed"), build_model("custom_cnn", config), True)
    assert stored["precision"] == "32-true"  # the head on stored features trains in fp32


def test_gpu_runs_give_the_loaders_every_core_but_the_trainers(monkeypatch):
    monkeypatch.setattr(datamodule, "available_cores", lambda: 16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert datamodule.loader_workers(Config()) == 15
    assert datamodule.loader_workers(Config(accelerator="cpu")) == 4  # a CPU run keeps cores for the model
    assert datamodule.loader_workers(Config(num_workers=3)) == 3


def test_phase_one_runner_leaves_the_model_where_it_is():
    config = Config(img_size=32)
    model = build_model("resnet50", config).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model.backbone(x).numpy()
    for runner in (make_runner(model, 32), make_runner(model, 32, device="cpu"), make_runner(model, 32, bf16=True)):
        features = runner(x)
        assert features.shape == expected.shape
        assert abs(features - expected).max() < 0.1 * abs(expected).max()
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())  # folding worked on a copy


def test_gpu_check_says_there_is_no_gpu_and_exits_0():
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "No NVIDIA GPU" in result.stdout or "No CUDA GPU" in result.stdout


def test_gpu_check_code_paths_run_on_the_cpu(tmp_path):
    """Its dry run (tiny sizes on the CPU) goes through the training and inference sections end to end."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--dry-run-on-cpu", "--faces", "120", "--img-size", "64",
         "--batches", "16", "--models", "custom_cnn", "--skip", "cli,phase1,compile", "--work", str(tmp_path / "w"),
         "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    results = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    row = results["training"]["custom_cnn@16"]
    assert row["loader"]["images_per_s"] > 0 and row["gpu_resident"]["images_per_s"] > 0
    assert row["efficiency"] == pytest.approx(row["loader"]["images_per_s"] / row["gpu_resident"]["images_per_s"],
                                              abs=1e-3)
    assert row["bare_pytorch"] > 0 and row["augment_on_device"]["loader"]["images_per_s"] > 0
    assert results["inference"]["custom_cnn"]["predict_split_b64"] > 0
    assert results["resnet50_train_gflop_per_image"] > 0
    assert result.stdout.strip().splitlines()[-1].startswith("GPU_CHECK {")


def test_device_augmentation_draws_what_the_cpu_path_applies():
    """``augment_on_device``: the loader draws each flip and warp and the GPU applies them. With one seed both ways
    draw the same: the landmarks match, and the warped pixels match OpenCV's up to its fixed-point rounding."""
    import numpy as np

    from affectkit.data.augment import TrainAugmenter, warp_images
    from affectkit.data.synthetic import render_face, sample_rng

    image, landmarks, *_ = render_face(1, sample_rng(0, 3), 96, intensity=0.8)
    landmarks = landmarks.astype(np.float32)
    for fill_mode in ("nearest", "constant", "reflect"):
        aug = Config().augmentation.model_copy(update={"fill_mode": fill_mode, "rotation_range": 30})
        for seed in range(4):
            applied, moved = TrainAugmenter(aug, seed=seed)(image, landmarks)
            matrix, drawn = TrainAugmenter(aug, seed=seed).draw(image, landmarks)
            np.testing.assert_allclose(drawn, moved, atol=1e-3)
            warped = warp_images(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous(),
                                 torch.from_numpy(matrix)[None], fill_mode)[0].permute(1, 2, 0).numpy()
            difference = np.abs(warped - applied.astype(np.float32))
            assert difference.mean() < 0.5 and np.percentile(difference, 99) < 3, (fill_mode, seed)


def test_device_augmentation_trains_and_refuses_what_it_cannot_do(demo_dir, tmp_path):
    from affectkit.data.datamodule import AffectDataModule, prepare_data
    from affectkit.training.trainer import train_model

    config = Config(img_size=32, batch_size=16, epochs=1, max_samples=96, augment_on_device=True, tensorboard=False)
    prepared = prepare_data(demo_dir, config, progress=False)
    batch = next(iter(AffectDataModule(prepared, config).train_dataloader()))
    assert len(batch) == 5 and batch[4].shape == (16, 3, 3)  # images leave the loader unwarped, with their maps
    result = train_model("custom_cnn", prepared, tmp_path / "run", config, quiet=True)
    assert result.best_path.is_file() and len(result.history) == 1
    for pixel_operation in ({"random_erasing": 0.25}, {"degrade": 0.3}, {"face_mask": 0.3}):
        with pytest.raises(ValueError, match="augment_on_device"):
            Config(augment_on_device=True, augmentation=pixel_operation)


def test_gpu_check_starts_no_section_after_its_budget(tmp_path):
    import json
    import os

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--dry-run-on-cpu", "--faces", "40", "--img-size", "64",
         "--budget-s", "0.001", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": str(temporary)})
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert all("skipped" in results[name] for name in ("training", "cli_run", "phase1", "inference", "compile"))
    assert result.stdout.strip().splitlines()[-1].startswith("GPU_CHECK {")
    assert not list(temporary.iterdir())  # without --work, its faces and cache go when it ends


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("accelerator", ["gpu", "cuda", "mps"])
def test_an_accelerator_this_machine_lacks_is_refused_before_any_data_is_read(tmp_path, accelerator):
    from affectkit.errors import AffectkitError
    from affectkit.pipeline import train_one

    if accelerator == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple GPU")
    with pytest.raises(AffectkitError, match=f"accelerator: {accelerator}, but PyTorch sees no"):
        train_one("custom_cnn", tmp_path / "no data here", tmp_path / "run", Config(accelerator=accelerator))
    assert not (tmp_path / "run").exists()
