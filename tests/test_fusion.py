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
from affectkit.models.factory import FusionHead, build_model, resolve_spec
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
        head.set_fusion((1.0, 0.0))
        first = fusion_model(x)
        head.set_fusion((0.0, 1.0), (1.0, 2.0))
        second = fusion_model(x)
        head.set_fusion((0.75, 0.25), (0.5, 2.0))
        mixed = fusion_model(x)
        head.set_fusion((0.5, 0.5))
    torch.testing.assert_close(first[0], torch.log_softmax(z1, 1))
    torch.testing.assert_close(first[1], v1)
    torch.testing.assert_close(second[0], torch.log_softmax(z2 / 2, 1))
    torch.testing.assert_close(second[2], a2)
    expected = 0.75 * torch.log_softmax(z1 / 0.5, 1) + 0.25 * torch.log_softmax(z2 / 2, 1)
    torch.testing.assert_close(mixed[0], expected)
    torch.testing.assert_close(mixed[1], 0.75 * v1 + 0.25 * v2)
    assert fusion_model.num_features == sum(head.widths) == 1280 + 128


@pytest.mark.parametrize("weights, temperatures", [((1.5, -0.5), None), ((0.5, 0.6), None), ((1.0,), None),
                                                   ((0.5, 0.5), (1.0, 0.0))])
def test_weights_off_the_simplex_or_a_temperature_at_zero_are_refused(fusion_model, weights, temperatures):
    with pytest.raises(AffectkitError, match=r"2 weights in \[0, 1\] summing to 1"):
        fusion_model.head.set_fusion(weights, temperatures)


def test_a_two_branch_file_that_stored_one_weight_loads_as_its_two_weights(fusion_model):
    state = fusion_model.state_dict()
    old = {k: v for k, v in state.items() if k != "head.weights"} | {"head.weight": torch.tensor(0.3)}
    again = build_model("fusion", Config(img_size=64))
    again.load_state_dict(old)
    assert again.head.weights.tolist() == pytest.approx([0.7, 0.3])


def _predictions(logits: np.ndarray) -> Predictions:
    return Predictions(logits.astype(np.float32), np.zeros((len(logits), 2), np.float32))


def test_the_weight_goes_to_the_branch_that_knows_the_classes():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 400)
    informed = rng.normal(size=(400, 8)) + 4 * np.eye(8)[labels]
    noise = rng.normal(size=(400, 8))
    assert choose_fusion([_predictions(noise), _predictions(informed)], labels).weights[1] >= 0.9
    fit = choose_fusion([_predictions(informed), _predictions(noise)], labels)
    assert fit.weights[1] <= 0.1 and fit.val_nll <= fit.val_nll_branches[0] + 1e-9
    assert fit.val_nll_branches[1] > np.log(8) - 0.1  # noise alone is no better than chance


def test_three_branches_fuse_one_weight_at_a_time_into_weights_that_sum_to_one():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 8, 600)
    onehot = np.eye(8)[labels]
    # Two half-informed branches erring independently, and noise: the two share the weight, the noise gets none.
    first, second = (rng.normal(size=(600, 8)) * 1.5 + 1.5 * onehot for _ in range(2))
    noise = rng.normal(size=(600, 8))
    fit = choose_fusion([_predictions(first), _predictions(noise), _predictions(second)], labels)
    assert sum(fit.weights) == pytest.approx(1.0) and len(fit.temperatures) == len(fit.val_nll_branches) == 3
    assert fit.weights[1] <= 0.05 and min(fit.weights[0], fit.weights[2]) >= 0.3
    assert fit.val_nll < min(fit.val_nll_branches)
    # The fused graph computes what the one-at-a-time choice scored.
    head = build_model("fusion:custom_cnn+mini_xception+resnet50", Config(img_size=64, use_light_models=True)).head
    head.set_fusion(fit.weights, fit.temperatures)
    logits = [torch.from_numpy(z.astype(np.float32)) for z in (first, noise, second)]
    fused = sum(w * torch.log_softmax(z / t, 1) for w, t, z in zip(head.weights, head.temperatures, logits))
    nll = torch.nn.functional.cross_entropy(fused, torch.from_numpy(labels)).item()
    assert nll == pytest.approx(fit.val_nll, abs=1e-4)


def test_a_fusion_of_named_models_resolves_each_branch_and_refuses_what_is_no_fusion():
    spec = resolve_spec("fusion:efficientnet_b0+mini_xception+timm:tf_efficientnet_lite1", use_light_models=True)
    assert spec.display_name == "EfficientNetLite0+MiniXception+timm-tf_efficientnet_lite1"
    assert [b.backbone for b in spec.branches] == ["tf_efficientnet_lite0", "mini_xception", "tf_efficientnet_lite1"]
    assert resolve_spec("fusion:resnet50+mini_xception").branches[0].display_name == "ResNet50"
    for key, problem in (("fusion:resnet50", "two or more models"), ("fusion:resnet50+", "two or more models"),
                         ("fusion:fusion+mini_xception", "itself a fusion"),
                         ("fusion:mini_xception+mini_xception", "names one model twice"),
                         ("fusion:resnet50+vgg", "Unknown model 'vgg'")):
        with pytest.raises(AffectkitError, match=problem):
            resolve_spec(key)


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
    from affectkit.models.metadata import read_metadata
    from affectkit.training.trainer import train_model

    # The FER2013 network trains with settings of its own (model_settings), the ImageNet one with the run's.
    config = tiny_config.override(tta_flip=True).with_values(
        {"model_settings.mini_xception.fine_tune_lr": 3e-4, "model_settings.mini_xception.head_width": 64})
    data = prepare_data(demo_dir, config, splits_path=tmp_path / "splits.csv", progress=False)
    result = train_model("fusion", data, tmp_path, config, pretrained=True, quiet=True)
    model, meta = load_model(result.best_path)
    branch_lrs = [read_metadata(tmp_path / f"best_{name}")["config"]["fine_tune_lr"]
                  for name in meta["fusion"]["branches"]]
    assert branch_lrs == [config.fine_tune_lr, 3e-4]
    assert [head.trunk[0].out_features for head in model.head.heads] == [config.head_width, 64]
    assert result.best_path.name == "best_MobileNetV2+MiniXception.safetensors"
    assert meta["initial_weights"] == "imagenet:registry+fer2013:registry"
    assert set(result.history["model"]) == {"MobileNetV2", "MiniXception"}
    fit = meta["fusion"]
    assert fit["branches"] == ["MobileNetV2", "MiniXception"]
    assert model.head.weights.tolist() == pytest.approx(fit["weights"])
    assert model.head.temperatures.tolist() == pytest.approx(fit["temperatures"])
    # The stored choice is the one the validation split gives again, from the fused graph's branches alone.
    val, test = data.positions("val"), data.positions("test")
    alone = []
    for weights in ((1.0, 0.0), (0.0, 1.0)):
        model.head.set_fusion(weights)
        alone.append(predict_split(model, data, val, tta_flip=True))
    model.head.set_fusion(fit["weights"], fit["temperatures"])
    again = choose_fusion(alone, data.expression[val])
    assert list(again.weights) == pytest.approx(fit["weights"])
    # The one model predicts what its two trained networks, saved beside it, predict fused by that choice.
    first, second = (predict_split(load_model(tmp_path / f"best_{name}")[0], data, test, tta_flip=True)
                     for name in fit["branches"])
    fusion = LateFusion(fit["weights"][1], fit["temperatures"][1], fit["val_nll"], *fit["val_nll_branches"])
    expected = fusion.apply(first.tempered(fit["temperatures"][0]).probs, second.probs)
    np.testing.assert_allclose(predict_split(model, data, test, tta_flip=True).probs, expected, atol=1e-4)
    assert onnx_parity(result.best_path, export_onnx(result.best_path, tmp_path / "model.onnx")) < 1e-3
    card = write_model_card(result.best_path).read_text()
    assert (f"weighted MobileNetV2 {again.weights[0]:g} (temperature {again.temperatures[0]:.3f}; alone "
            f"{again.val_nll_branches[0]:.3f}), MiniXception {again.weights[1]:g}") in card
    assert "chosen on the validation split by log-loss" in card
    assert "Kept: MobileNetV2 epoch" in card and "; MiniXception epoch" in card
    assert "| model_settings | mini_xception: fine_tune_lr=0.0003, head_width=64 |" in card


def test_a_fusion_model_refuses_a_single_weights_file(demo_dir, tmp_path, tiny_config):
    from affectkit.data.datamodule import prepare_data
    from affectkit.training.trainer import train_model

    data = prepare_data(demo_dir, tiny_config, splits_path=tmp_path / "splits.csv", progress=False)
    with pytest.raises(AffectkitError, match="one backbone per branch"):
        train_model("fusion", data, tmp_path, tiny_config, weights=tmp_path / "any.pth", quiet=True)


def test_settings_for_a_model_no_run_can_train_are_refused_before_any_work(demo_dir, tmp_path, tiny_config):
    from affectkit.data.datamodule import prepare_data
    from affectkit.training.trainer import train_model

    data = prepare_data(demo_dir, tiny_config, splits_path=tmp_path / "splits.csv", progress=False)
    misspelt = tiny_config.with_values({"model_settings.mini_xcepton.fine_tune_lr": 1e-3})
    with pytest.raises(AffectkitError, match="model_settings.mini_xcepton: Unknown model"):
        train_model("fusion", data, tmp_path, misspelt, pretrained=True, quiet=True)
    assert not list(tmp_path.glob("best_*"))


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


def test_a_fusion_of_three_named_models_trains_exports_and_reloads_as_one(demo_dir, tmp_path, tiny_config):
    from affectkit.data.datamodule import prepare_data
    from affectkit.evaluation.evaluator import predict_split
    from affectkit.inference.export import export_onnx, onnx_parity
    from affectkit.models.io import load_model
    from affectkit.training.trainer import train_model

    config = tiny_config.override(use_light_models=True)
    data = prepare_data(demo_dir, config, splits_path=tmp_path / "splits.csv", progress=False)
    result = train_model("fusion:resnet50+mini_xception+custom_cnn", data, tmp_path, config, pretrained=True,
                         quiet=True)
    assert result.best_path.name == "best_MobileNetV2+MiniXception+CustomCNN.safetensors"
    assert [b.name for b in result.branches] == ["MobileNetV2", "MiniXception", "CustomCNN"]
    model, meta = load_model(result.best_path)
    assert meta["initial_weights"] == "imagenet:registry+fer2013:registry+scratch"
    assert meta["fusion"]["branches"] == ["MobileNetV2", "MiniXception", "CustomCNN"]
    assert model.head.weights.tolist() == pytest.approx(meta["fusion"]["weights"])
    assert sum(meta["fusion"]["weights"]) == pytest.approx(1.0)
    # Each branch file reloads as the model it was trained as.
    assert [load_model(b.best_path)[1]["display_name"] for b in result.branches] == meta["fusion"]["branches"]
    test = data.positions("test")
    np.testing.assert_allclose(predict_split(model, data, test).probs.sum(1), 1.0, atol=1e-5)
    assert onnx_parity(result.best_path, export_onnx(result.best_path, tmp_path / "model.onnx")) < 1e-3
