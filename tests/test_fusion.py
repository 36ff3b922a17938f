"""The fusion model: two differently pretrained branches, each with its own loss, fused in the graph by a weight
chosen on the validation split."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from affectkit.config import Config
from affectkit.errors import AffectkitError
from affectkit.evaluation.evaluator import Predictions
from affectkit.models.factory import FusionHead, build_model
from affectkit.models.registry import is_pretrained
from affectkit.training.fusion import choose_fusion

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fusion_model():
    torch.manual_seed(0)
    return build_model("fusion", Config(img_size=64)).eval()


def test_the_weight_moves_the_output_from_one_branch_to_the_other(fusion_model):
    x = torch.randn(3, 3, 64, 64)
    head: FusionHead = fusion_model.head
    with torch.no_grad():
        (z1, v1, a1), (z2, v2, a2) = head.branch_outputs(fusion_model.backbone(x))
        head.set_fusion(0.0)
        first = fusion_model(x)
        head.set_fusion(1.0, (1.0, 2.0))
        second = fusion_model(x)
        head.set_fusion(0.25, (0.5, 2.0))
        mixed = fusion_model(x)
        head.set_fusion(0.5)
    torch.testing.assert_close(first[0], torch.log_softmax(z1, 1))
    torch.testing.assert_close(first[1], v1)
    torch.testing.assert_close(second[0], torch.log_softmax(z2 / 2, 1))
    torch.testing.assert_close(second[2], a2)
    expected = 0.75 * torch.log_softmax(z1 / 0.5, 1) + 0.25 * torch.log_softmax(z2 / 2, 1)
    torch.testing.assert_close(mixed[0], expected)
    torch.testing.assert_close(mixed[1], 0.75 * v1 + 0.25 * v2)
    assert fusion_model.num_features == sum(head.widths) == 1280 + 128


def test_a_weight_outside_zero_to_one_is_refused(fusion_model):
    with pytest.raises(AffectkitError, match=r"\[0, 1\]"):
        fusion_model.head.set_fusion(1.5)


def _predictions(logits: np.ndarray) -> Predictions:
    return Predictions(logits.astype(np.float32), np.zeros((len(logits), 2), np.float32))


def test_the_weight_goes_to_the_branch_that_knows_the_classes():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 400)
    informed = rng.normal(size=(400, 8)) + 4 * np.eye(8)[labels]
    noise = rng.normal(size=(400, 8))
    assert choose_fusion(_predictions(noise), _predictions(informed), labels).weight >= 0.9
    fit = choose_fusion(_predictions(informed), _predictions(noise), labels)
    assert fit.weight <= 0.1 and fit.val_nll <= fit.val_nll_branches[0] + 1e-9
    assert fit.val_nll_branches[1] > np.log(8) - 0.1  # noise alone is no better than chance


def test_fused_kinds_are_pretrained_only_when_every_branch_is():
    assert is_pretrained("imagenet:registry+fer2013:registry")
    assert not is_pretrained("imagenet:registry+random")


def test_trains_its_networks_apart_then_fuses_them_as_chosen_on_val(demo_dir, tmp_path, tiny_config):
    from affectkit.data.datamodule import prepare_data
    from affectkit.evaluation.card import write_model_card
    from affectkit.evaluation.ensemble import LateFusion
    from affectkit.evaluation.evaluator import predict_split
    from affectkit.inference.export import export_onnx, onnx_parity
    from affectkit.models.io import load_model
    from affectkit.training.trainer import train_model

    config = tiny_config.override(tta_flip=True)
    data = prepare_data(demo_dir, config, splits_path=tmp_path / "splits.csv", progress=False)
    result = train_model("fusion", data, tmp_path, config, pretrained=True, quiet=True)
    model, meta = load_model(result.best_path)
    assert result.best_path.name == "best_MobileNetV2+MiniXception.safetensors"
    assert meta["initial_weights"] == "imagenet:registry+fer2013:registry"
    assert set(result.history["model"]) == {"MobileNetV2", "MiniXception"}
    fit = meta["fusion"]
    assert fit["branches"] == ["MobileNetV2", "MiniXception"]
    assert float(model.head.weight) == pytest.approx(fit["weight"])
    assert model.head.temperatures.tolist() == pytest.approx(fit["temperatures"])
    # The stored choice is the one the validation split gives again, from the fused graph's branches alone.
    val, test = data.positions("val"), data.positions("test")
    alone = []
    for weight in (0.0, 1.0):
        model.head.set_fusion(weight)
        alone.append(predict_split(model, data, val, tta_flip=True))
    model.head.set_fusion(fit["weight"], tuple(fit["temperatures"]))
    again = choose_fusion(*alone, data.expression[val])
    assert again.weight == fit["weight"]
    # The one model predicts what its two trained networks, saved beside it, predict fused by that choice.
    first, second = (predict_split(load_model(tmp_path / f"best_{name}")[0], data, test, tta_flip=True)
                     for name in fit["branches"])
    fusion = LateFusion(fit["weight"], fit["temperatures"][1], fit["val_nll"], *fit["val_nll_branches"])
    expected = fusion.apply(first.tempered(fit["temperatures"][0]).probs, second.probs)
    np.testing.assert_allclose(predict_split(model, data, test, tta_flip=True).probs, expected, atol=1e-4)
    assert onnx_parity(result.best_path, export_onnx(result.best_path, tmp_path / "model.onnx")) < 1e-3
    card = write_model_card(result.best_path).read_text()
    assert f"weighted {1 - again.weight:g} and {again.weight:g}, chosen on the validation split" in card
    assert "Kept: MobileNetV2 epoch" in card and "; MiniXception epoch" in card


def test_a_fusion_model_refuses_a_single_weights_file(demo_dir, tmp_path, tiny_config):
    from affectkit.data.datamodule import prepare_data
    from affectkit.training.trainer import train_model

    data = prepare_data(demo_dir, tiny_config, splits_path=tmp_path / "splits.csv", progress=False)
    with pytest.raises(AffectkitError, match="one backbone per branch"):
        train_model("fusion", data, tmp_path, tiny_config, weights=tmp_path / "any.pth", quiet=True)


def test_a_fusion_takes_the_branch_its_run_already_trained_as_it_is(demo_dir, tmp_path, tiny_config):
    """`run --models resnet50,fusion` on light models: the fusion's MobileNetV2 is the one just trained."""
    from affectkit.data.datamodule import prepare_data
    from affectkit.training.trainer import train_model

    config = tiny_config.override(use_light_models=True)
    data = prepare_data(demo_dir, config, splits_path=tmp_path / "splits.csv", progress=False)
    first = train_model("resnet50", data, tmp_path, config, pretrained=True, quiet=True)
    assert first.name == "MobileNetV2"
    written = first.best_path.stat().st_mtime_ns
    fused = train_model("fusion", data, tmp_path, config, pretrained=True, quiet=True, trained={first.name: first})
    assert first.best_path.stat().st_mtime_ns == written
    reused = fused.history[fused.history["model"] == "MobileNetV2"]
    np.testing.assert_array_equal(reused["train_loss"], first.history["train_loss"])
    assert (tmp_path / "best_MiniXception.safetensors").is_file()


def test_a_branch_its_run_already_trained_in_a_fusion_is_not_trained_again(demo_dir, tmp_path, tiny_config):
    """`run --models fusion,resnet50` on light models: the MobileNetV2 row is the fusion's branch, not a second run."""
    from affectkit.data.datamodule import prepare_data
    from affectkit.training.trainer import train_model

    config = tiny_config.override(use_light_models=True)
    data = prepare_data(demo_dir, config, splits_path=tmp_path / "splits.csv", progress=False)
    fused = train_model("fusion", data, tmp_path, config, pretrained=True, quiet=True)
    assert [b.name for b in fused.branches] == ["MobileNetV2", "MiniXception"]
    branch = fused.branches[0]
    written = branch.best_path.stat().st_mtime_ns
    again = train_model("resnet50", data, tmp_path, config, pretrained=True, quiet=True,
                        trained={b.name: b for b in fused.branches})
    assert again is branch
    assert branch.best_path.stat().st_mtime_ns == written
    start = tmp_path / "start.safetensors"
    shutil.copyfile(branch.best_path, start)
    other_start = train_model("resnet50", data, tmp_path, config, weights=start, quiet=True,
                              trained={b.name: b for b in fused.branches})
    assert other_start is not branch
    assert branch.best_path.stat().st_mtime_ns != written
