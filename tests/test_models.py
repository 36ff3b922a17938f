import time

import pytest
import timm
import torch
from torch import nn

from affectkit.config import Config
from affectkit.errors import AffectkitError
from affectkit.models import build_model, count_parameters, load_model, save_model
from affectkit.models.metadata import read_metadata
from affectkit.models.weights import load_backbone_weights, load_pretrained_weights, load_weights_file


def _layers(head):
    return [type(m).__name__ + (f"({m.out_features})" if isinstance(m, nn.Linear) else "")
            + (f"({m.p})" if isinstance(m, nn.Dropout) else "") for m in head.trunk]


@pytest.mark.parametrize(
    "name, backbone_features, trunk",
    [
        ("resnet50", 2048, ["Linear(512)", "ReLU", "BatchNorm1d", "Dropout(0.5)", "Linear(256)", "ReLU", "Dropout(0.3)"]),
        ("efficientnet_b0", 1280, ["Linear(512)", "ReLU", "BatchNorm1d", "Dropout(0.5)"]),
        ("custom_cnn", 256, ["Linear(512)", "ReLU", "Dropout(0.5)", "Linear(256)", "ReLU", "Dropout(0.3)"]),
    ],
)
def test_heads_follow_the_spec(name, backbone_features, trunk):
    model = build_model(name)
    print(f"{name}: {count_parameters(model):,} parameters")
    assert model.head.trunk[0].in_features == backbone_features
    assert _layers(model.head) == trunk
    assert model.head.expression.out_features == 8
    assert model.head.valence.out_features == 1 and model.head.arousal.out_features == 1
    logits, valence, arousal = model.eval()(torch.randn(2, 3, 64, 64) * 10)
    assert logits.shape == (2, 8) and valence.shape == (2,) and arousal.shape == (2,)
    assert valence.abs().max() <= 1 and arousal.abs().max() <= 1  # tanh outputs


def test_parameter_counts_are_those_of_the_architectures():
    assert 24e6 < count_parameters(build_model("resnet50")) < 25e6  # 23.5M backbone + head
    assert 4.5e6 < count_parameters(build_model("efficientnet_b0")) < 4.8e6
    assert count_parameters(build_model("custom_cnn")) < 1e6


def test_custom_cnn_layout():
    stages = build_model("custom_cnn").backbone.features
    convs = [m.out_channels for m in stages.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in stages.modules() if isinstance(m, nn.MaxPool2d)]
    assert convs == [32, 64, 128, 256] and len(pools) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in stages.modules()) == 4


def test_custom_cnn_family_of_other_widths_and_depths_trains_saves_and_reloads(tmp_path):
    config = Config(img_size=32, cnn_widths=[16, 32, 64], cnn_convs_per_stage=2, attention="se")
    model = build_model("custom_cnn", config)
    stages = model.backbone.features
    assert [m.out_channels for m in stages.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)] == [
        16, 16, 32, 32, 64, 64]
    assert sum(isinstance(m, nn.MaxPool2d) for m in stages.modules()) == 2
    assert model.backbone.num_features == 64 and model.head.trunk[0].in_features == 64
    assert count_parameters(model) < count_parameters(build_model("custom_cnn", Config(img_size=32)))
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    logits, valence, arousal = model.eval()(images)
    assert logits.shape == (2, 8) and valence.shape == (2,)
    stem = save_model(model, tmp_path / "best_CustomCNN", config)
    again, _ = load_model(stem)
    assert torch.equal(again.eval()(images)[0], logits)
    with pytest.raises(ValueError, match="cnn_widths"):
        Config(cnn_widths=[32])


def test_self_attention_sees_the_whole_face_from_the_last_stage_and_exports(tmp_path):
    """attention: self puts one self-attention block after the custom CNN's last stage. It starts as the plain CNN
    (its output scale is 0), relates positions a 3x3 convolution cannot (one corner moves the opposite one), reads
    maps of any size, and exports to ONNX with a dynamic batch."""
    from affectkit.inference.export import export_onnx, onnx_parity
    from affectkit.models.custom_cnn import SelfAttention

    model = build_model("custom_cnn", Config(img_size=64, attention="self"))
    blocks = [m for m in model.modules() if isinstance(m, SelfAttention)]
    assert len(blocks) == 1 and isinstance(model.backbone.features[-1][-1], SelfAttention)
    block = blocks[0].eval()
    x = torch.randn(2, 256, 7, 7)
    with torch.no_grad():
        assert torch.equal(block(x), x)  # a new network is the plain CNN
        block.scale.fill_(1.0)
        moved = x.clone()
        moved[:, :, 6, 6] += 5.0
        assert (block(moved) - block(x))[:, :, 0, 0].abs().max() > 1e-3  # the far corner answers
        assert block(torch.randn(1, 256, 4, 5)).shape == (1, 256, 4, 5)
    save_model(model, tmp_path / "best_CustomCNN", Config(img_size=64, attention="self"))
    assert onnx_parity(tmp_path / "best_CustomCNN", export_onnx(tmp_path / "best_CustomCNN")) < 1e-4


def test_light_models_and_attention_and_timm_names():
    light = build_model("resnet50", Config(use_light_models=True))
    assert light.backbone_name == "mobilenetv2_100" and light.spec.display_name == "MobileNetV2"
    assert light.spec.stands_in_for == "ResNet50" and light.head.trunk[4].out_features == 256  # ResNet50's head
    lite = build_model("efficientnet_b0", Config(use_light_models=True))
    assert lite.backbone_name == "tf_efficientnet_lite0" and lite.spec.display_name == "EfficientNetLite0"
    se = build_model("custom_cnn", Config(attention="se"))
    assert any(type(m).__name__ == "SqueezeExcite" for m in se.modules())
    cbam = build_model("custom_cnn", Config(attention="cbam"))
    assert cbam.eval()(torch.randn(1, 3, 32, 32))[0].shape == (1, 8)
    assert build_model("timm:mobilenetv3_small_100").spec.display_name == "timm-mobilenetv3_small_100"
    with pytest.raises(AffectkitError, match="Unknown model") as unknown:
        build_model("vgg_nonsense")
    assert "timm model" not in str(unknown.value)
    # A timm name given bare, as other toolkits take it: the message gives the spellings that work.
    with pytest.raises(AffectkitError, match=r"--model timm:mobilenetv2_100, or --model resnet50 --light"):
        build_model("mobilenetv2_100")
    with pytest.raises(AffectkitError, match=r"'convnext_tiny' is a timm model: --model timm:convnext_tiny\.$"):
        build_model("convnext_tiny")
    # The names the reports and files give the models (best_CustomCNN, "MobileNetV2" rows) lead to their keys.
    with pytest.raises(AffectkitError, match=r"'CustomCNN' is the name reports give --model custom_cnn\.$"):
        build_model("CustomCNN")
    with pytest.raises(AffectkitError, match=r"'MobileNetV2' is the name reports give --model resnet50 --light\.$"):
        build_model("MobileNetV2")


def test_saved_model_reloads_identically(tmp_path):
    config = Config(img_size=48)
    model = build_model("efficientnet_b0", config).eval()
    path = save_model(model, tmp_path / "best_EfficientNetB0", config, extra={"best": {"val_loss": 1.0}})
    assert path.suffix == ".safetensors" and (tmp_path / "best_EfficientNetB0.json").is_file()
    again, meta = load_model(path)
    x = torch.randn(3, 3, 48, 48)
    for a, b in zip(model(x), again(x)):
        assert torch.equal(a, b)
    assert meta["input_size"] == 48 and meta["class_names"][7] == "Contempt"


def test_weights_file_with_timm_naming_loads_every_backbone_tensor(tmp_path):
    reference = timm.create_model("resnet50", num_classes=1000)
    torch.save(reference.state_dict(), tmp_path / "r50.pth")
    model = build_model("resnet50")
    missing, unexpected = load_backbone_weights(model, tmp_path / "r50.pth")
    assert missing == [] and unexpected == []
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)


def test_weights_file_that_does_not_fit_is_refused(tmp_path):
    torch.save({"x": torch.zeros(3)}, tmp_path / "w.pt")
    with pytest.raises(AffectkitError, match="does not fit"):
        load_backbone_weights(build_model("resnet50"), tmp_path / "w.pt")
    (tmp_path / "evil.pt").write_bytes(b"garbage")
    with pytest.raises(AffectkitError, match="could not be read"):
        load_backbone_weights(build_model("resnet50"), tmp_path / "evil.pt")


def test_a_model_path_that_names_nothing_is_called_no_such_model(tmp_path):
    with pytest.raises(AffectkitError, match=r"best_X: no such model \(neither best_X.safetensors nor best_X.json"):
        read_metadata(tmp_path / "best_X")
    (tmp_path / "best_X.safetensors").write_bytes(b"")  # weights without their description
    with pytest.raises(AffectkitError, match=r"best_X.json is missing"):
        read_metadata(tmp_path / "best_X")


def test_weights_file_saved_by_affectkit_starts_the_whole_network(tmp_path):
    """A model of yours (best_X.safetensors) fine-tuned on new data: its heads come with its backbone, the custom
    CNN's included; another network's file, or a custom CNN given a backbone of another toolkit, is refused."""
    config = Config(img_size=48)
    torch.manual_seed(1)
    saved = build_model("custom_cnn", config)
    path = save_model(saved, tmp_path / "best_CustomCNN", config)
    torch.manual_seed(2)
    fresh = build_model("custom_cnn", config)
    detail = load_weights_file(fresh, path)
    assert detail.startswith(f"the whole network (backbone and heads) from {path}, a model affectkit saved")
    for key, tensor in saved.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], tensor), key
    with pytest.raises(AffectkitError, match=r"not of this CustomCNN \(custom_cnn\).* It is a CustomCNN at 48 px"):
        load_weights_file(build_model("custom_cnn", Config(img_size=48, attention="se")), path)
    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(AffectkitError, match="not a model affectkit saved, and the custom CNN has no other"):
        load_weights_file(build_model("custom_cnn", config), tmp_path / "r18.pth")
    assert load_weights_file(build_model("timm:resnet18"), tmp_path / "r18.pth").startswith("backbone weights from")


def test_pretrained_without_network_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(AffectkitError, match="--weights FILE.*--light"):
        load_pretrained_weights(build_model("resnet50"))
    assert time.perf_counter() - start < 20
