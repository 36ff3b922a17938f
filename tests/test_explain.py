"""Grad-CAM, occlusion and integrated-gradients explanations (affectkit explain): where a model looks, on a model
whose answer is known to come from one corner of the face, on every kind of backbone, through the command on photos,
videos and a data set, and served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from affectkit.config import CLASS_NAMES, Config
from affectkit.errors import AffectkitError
from affectkit.inference.explain import (
    explained_layers,
    final_map_side,
    grad_cam,
    integrated_gradients,
    map_peaks,
    occlusion,
    occlusion_window,
    upper_half_share,
)
from affectkit.inference.torch_backend import TorchBackend
from affectkit.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

HAPPY = CLASS_NAMES.index("Happy")


def _corner_reader() -> torch.nn.Module:
    """A custom CNN whose feature map is the red channel where it is positive, pooled, and whose Happy logit and
    valence are that mean: only red pixels raise them."""
    model = build_model("custom_cnn", Config(img_size=32, cnn_widths=[4, 4], head_width=8)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for stage in model.backbone.features:
            stage[0].weight[0, 0, 1, 1] = 1.0  # channel 0 passes the red channel through, stage after stage
            stage[1].weight.fill_(1.0)
        trunk = model.head.trunk
        trunk[0].weight[0, 0] = trunk[3].weight[0, 0] = 1.0
        model.head.expression.weight[HAPPY, 0] = 1.0
        model.head.valence.weight[0, 0] = 1.0
    return model


def _red_corner(faces: int = 2) -> np.ndarray:
    batch = np.zeros((faces, 3, 32, 32), np.float32)
    batch[:, 0, :10, :10] = 1.0  # red in the top-left corner only
    return batch


def _top_left_share(maps: np.ndarray) -> np.ndarray:
    return maps[:, :16, :16].sum((1, 2)) / maps.sum((1, 2))


@pytest.mark.parametrize("tta_flip", [False, True])
def test_the_map_lights_the_part_of_the_face_the_answer_is_read_from(tta_flip):
    model = _corner_reader()
    maps = grad_cam(model, _red_corner(), [HAPPY, HAPPY], tta_flip=tta_flip)
    assert maps.shape == (2, 32, 32) and maps.max() == pytest.approx(1.0)
    # Served with flip test-time augmentation, the mirror image's map is mirrored back onto the face.
    assert (_top_left_share(maps) > 0.95).all()
    assert (upper_half_share(maps) > 0.95).all()
    assert (map_peaks(maps) < 10 / 32).all()  # x and y of the peak: within the red corner
    valence = grad_cam(model, _red_corner(), "valence", tta_flip=tta_flip)
    assert (_top_left_share(valence) > 0.95).all()
    # Nothing raises the Anger logit: an empty map, whose share of the upper face is undefined.
    empty = grad_cam(model, _red_corner(), [CLASS_NAMES.index("Anger")] * 2)
    assert not empty.any() and np.isnan(upper_half_share(empty)).all() and np.isnan(map_peaks(empty)).all()


@pytest.mark.parametrize("tta_flip", [False, True])
def test_occlusion_lights_the_part_of_the_face_whose_cover_lowers_the_answer(tta_flip):
    backend = TorchBackend(_corner_reader())
    maps = occlusion(backend, _red_corner(), [HAPPY, HAPPY], tta_flip=tta_flip)
    assert maps.shape == (2, 32, 32) and maps.max() == pytest.approx(1.0) and maps.min() >= 0
    assert (_top_left_share(maps) > 0.95).all() and (map_peaks(maps) < 10 / 32).all()
    assert not maps[:, 24:, :].any() and not maps[:, :, 24:].any()  # no patch there covers red: no drop
    assert (_top_left_share(occlusion(backend, _red_corner(), "valence", tta_flip=tta_flip)) > 0.95).all()
    # Covering the red raises every other class's probability: no evidence for Anger anywhere.
    empty = occlusion(backend, _red_corner(), [CLASS_NAMES.index("Anger")] * 2, tta_flip=tta_flip)
    assert not empty.any() and np.isnan(upper_half_share(empty)).all()


@pytest.mark.parametrize("tta_flip", [False, True])
def test_integrated_gradients_light_the_pixels_whose_rise_from_the_starts_raises_the_answer(tta_flip):
    model = _corner_reader()
    maps = integrated_gradients(model, _red_corner(), [HAPPY, HAPPY], tta_flip=tta_flip)
    assert maps.shape == (2, 32, 32) and maps.max() == pytest.approx(1.0) and maps.min() >= 0
    # A pixel as grey as the grey start adds nothing from it, and less red than the blurred start takes away.
    assert not maps[:, 10:, :].any() and not maps[:, :, 10:].any()
    assert _top_left_share(maps) == pytest.approx(1.0) and (map_peaks(maps) < 10 / 32).all()
    valence = integrated_gradients(model, _red_corner(), "valence", tta_flip=tta_flip)
    assert _top_left_share(valence) == pytest.approx(1.0)
    empty = integrated_gradients(model, _red_corner(), [CLASS_NAMES.index("Anger")] * 2, tta_flip=tta_flip)
    assert not empty.any() and np.isnan(upper_half_share(empty)).all()
    with torch.inference_mode():
        model.to(memory_format=torch.channels_last)
    with pytest.raises(AffectkitError, match="inference_mode"):
        integrated_gradients(model, _red_corner(), [HAPPY, HAPPY])


def test_integrated_gradients_weigh_a_faces_detail_above_its_even_colour():
    """From the grey start alone, each red pixel of a red spot on an even red field counts by its redness (the field
    half the spot); the blurred start keeps the field's colour, so with it the field counts less and the spot's
    detail stands out."""
    model = _corner_reader()
    batch = np.zeros((1, 3, 32, 32), np.float32)
    batch[:, 0] = 0.5
    batch[:, 0, 14:18, 14:18] = 1.0
    field = (slice(None), slice(0, 6), slice(0, 6))  # far from the spot

    def field_to_spot(maps: np.ndarray) -> float:
        return float(maps[field].mean() / maps[:, 14:18, 14:18].mean())

    assert field_to_spot(integrated_gradients(model, batch, [HAPPY], starts=["grey"])) == pytest.approx(0.5, rel=0.05)
    both = integrated_gradients(model, batch, [HAPPY])
    assert field_to_spot(both) < 0.4 and (map_peaks(both) * 32 >= 14).all() and (map_peaks(both) * 32 < 18).all()
    assert field_to_spot(integrated_gradients(model, batch, [HAPPY], starts=["blur"])) < 0.1
    with pytest.raises(AffectkitError, match="start from grey and/or blur, not noise"):
        integrated_gradients(model, batch, [HAPPY], starts=["noise"])


def test_occlusion_with_a_blurred_patch_weighs_a_faces_detail_above_its_even_colour():
    """A model whose Happy logit is the face's mean red plus its bright red detail: a grey patch lowers the red of
    an even red field as it lowers the spot's, so both count; a patch of the face blurred keeps the field's colour
    (a blur keeps every region's mean), so only covering the spot's detail lowers the answer."""
    def backend(batch: np.ndarray):
        red = batch[:, 0]
        logits = np.zeros((len(batch), len(CLASS_NAMES)), np.float32)
        logits[:, HAPPY] = red.mean((1, 2)) + 10 * np.maximum(red - 0.75, 0).mean((1, 2))
        return logits, np.zeros(len(batch), np.float32), np.zeros(len(batch), np.float32)

    batch = np.zeros((1, 3, 32, 32), np.float32)
    batch[:, 0] = 0.5
    batch[:, 0, 14:18, 14:18] = 1.0

    def field_to_spot(maps: np.ndarray) -> float:
        return float(maps[:, 0:6, 0:6].mean() / maps[:, 14:18, 14:18].mean())

    grey = occlusion(backend, batch, [HAPPY])
    assert field_to_spot(grey) > 0.2
    blurred_patch = occlusion(backend, batch, [HAPPY], fills=["blur"])
    assert field_to_spot(blurred_patch) < 0.01 and (abs(map_peaks(blurred_patch) * 32 - 16) < 2).all()  # the spot
    assert field_to_spot(blurred_patch) < field_to_spot(occlusion(backend, batch, [HAPPY], fills=["grey", "blur"])
                                                        ) < field_to_spot(grey)
    with pytest.raises(AffectkitError, match="covers with grey and/or blur, not noise"):
        occlusion(backend, batch, [HAPPY], fills=["noise"])


@pytest.mark.parametrize("size", [16, 32, 48, 64, 96, 112, 160, 224, 299])
def test_the_occlusion_patch_reaches_every_pixel_of_the_crop(size):
    window, stride = occlusion_window(size)
    assert 0 < stride <= window < size and (size - window) % stride == 0  # its last place ends at the far edge
    assert window == pytest.approx(size / 6, rel=0.5)


def test_occlusion_and_integrated_gradients_explain_a_transformer_that_grad_cam_cannot():
    torch.manual_seed(0)
    model = build_model("timm:vit_tiny_patch16_224", Config(img_size=32))
    batch = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    for maps in (occlusion(TorchBackend(model), batch, [HAPPY, 0], tta_flip=True),
                 integrated_gradients(model, batch, [HAPPY, 0], tta_flip=True)):
        assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and maps.min() >= 0 and maps.max() == 1.0
        assert len(np.unique(maps)) > 10


def test_a_model_predicted_under_inference_mode_is_refused_with_a_reason():
    model = _corner_reader()
    with torch.inference_mode():
        model.to(memory_format=torch.channels_last)  # as predicting a split does: its weights become inference tensors
    with pytest.raises(AffectkitError, match="inference_mode"):
        grad_cam(model, _red_corner(), [HAPPY, HAPPY])


def test_a_model_timed_or_scored_by_the_evaluator_can_still_be_explained():
    from affectkit.evaluation.evaluator import inference_ms_per_image

    model = _corner_reader()
    inference_ms_per_image(model, 32)  # as predict_split, it lays the weights out channels-last
    assert not any(p.is_inference() for p in model.parameters())
    assert (_top_left_share(grad_cam(model, _red_corner(), [HAPPY, HAPPY])) > 0.95).all()


@pytest.mark.parametrize("name, size, side, layers", [("custom_cnn", 64, 8, 1), ("resnet50", 96, 3, 1),
                                                      ("mini_xception", 64, 4, 1), ("fusion", 96, 3, 2)])
def test_every_backbone_is_explained_at_its_own_resolution(name, size, side, layers):
    torch.manual_seed(0)
    model = build_model(name, Config(img_size=size, use_light_models=True)).eval()
    assert final_map_side(model, size) == side
    assert len(explained_layers(model.backbone)) == layers  # a fusion: a map per network, summed
    batch = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype(np.float32)
    with torch.inference_mode():  # a caller's inference mode does not stop the gradients the maps are weighed by
        maps = {layer: grad_cam(model, batch, [HAPPY, 0], layer=layer) for layer in ("final", "finer", "auto")}
        pixels = integrated_gradients(model, batch, [HAPPY, 0], tta_flip=True)
    for found in [*maps.values(), pixels]:
        assert found.shape == (2, size, size) and np.isfinite(found).all() and found.min() >= 0
        # Each scaled by its peak; a random network may raise nothing for a class (an empty map).
        assert set(np.round(found.max((1, 2)), 5)) <= {0.0, 1.0} and found.max() == pytest.approx(1.0)
    # auto takes the finer map where the final one is under 7 cells across, and the final one where it is not.
    assert np.array_equal(maps["auto"], maps["finer" if side < 7 else "final"])
    assert not np.array_equal(maps["final"], maps["finer"])


def test_a_backbone_without_a_feature_map_is_refused():
    model = build_model("timm:vit_tiny_patch16_224", Config(img_size=32))
    with pytest.raises(AffectkitError, match="no convolutional feature map"):
        explained_layers(model.backbone)


def test_the_command_explains_each_face_of_photos(model_path, demo_dir, tmp_path):
    from PIL import Image

    from affectkit.cli import app

    photos = sorted((demo_dir / "images").iterdir())[:3]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "clip.mp4").write_bytes(b"a video by its name only")
    out = tmp_path / "out"
    done = CliRunner().invoke(app, ["explain", str(model_path), *map(str, photos), str(tmp_path / "broken.jpg"),
                                    str(tmp_path / "clip.mp4"), "--no-detect", "--out", str(out)])
    assert done.exit_code == 0, done.output
    table = pd.read_csv(out / "explanations.csv")
    assert list(table["status"][:3]) == ["ok"] * 3 and table["status"][3:].str.startswith("error: ").all()
    said = " ".join(done.output.split())  # each named, and the others still explained
    assert "broken.jpg: not an image" in said and "clip.mp4: not a readable video" in said
    assert "Explained 3 face(s) in 5 file(s)." in said
    assert (table["target"][:3] == table["expression"][:3]).all()  # the class it answers, by default
    for map_file in table["map"][:3]:
        panel = Image.open(out / map_file)
        assert panel.width == 2 * panel.height >= 2 * 192  # the face, then the face under its map
    assert (out / "explanations.png").stat().st_size > 10_000

    arousal = CliRunner().invoke(app, ["explain", str(model_path), str(photos[0]), "--no-detect", "--target",
                                       "arousal", "--out", str(tmp_path / "arousal")])
    assert arousal.exit_code == 0, arousal.output
    assert pd.read_csv(tmp_path / "arousal" / "explanations.csv")["target"].tolist() == ["arousal"]

    import affectkit

    happy = affectkit.explain(model_path, photos[1], target="happy", detect=False, out=tmp_path / "api")
    assert happy.table["target"].tolist() == ["Happy"] and happy.paths["csv"].is_file()  # the class by name

    occluded = CliRunner().invoke(app, ["explain", str(model_path), *map(str, photos), "--no-detect", "--method",
                                        "occlusion", "--out", str(tmp_path / "occlusion")])
    assert occluded.exit_code == 0, occluded.output
    by_occlusion = pd.read_csv(tmp_path / "occlusion" / "explanations.csv")
    assert (by_occlusion["expression"] == table["expression"][:3]).all()  # the same answers, mapped otherwise
    assert by_occlusion["upper_half_share"].dropna().between(0, 1).all()
    assert not np.allclose(by_occlusion["upper_half_share"], table["upper_half_share"][:3], equal_nan=True)
    with pytest.raises(AffectkitError, match="not both"):
        affectkit.explain(model_path, photos[1], data=demo_dir)


def _clip(path: Path, faces: list[np.ndarray], fps: float) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, faces[0].shape[1::-1])
    for face in faces:
        writer.write(cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_the_command_explains_the_faces_of_a_videos_frames(model_path, demo_dir, tmp_path):
    import cv2
    from PIL import Image

    from affectkit.cli import app

    faces = [np.asarray(Image.open(p).convert("RGB").resize((96, 96))) for p in
             sorted((demo_dir / "images").iterdir())[:25]]
    clip = _clip(tmp_path / "clip.avi", faces, fps=10.0)
    out = tmp_path / "out"
    done = CliRunner().invoke(app, ["explain", str(model_path), str(clip), "--no-detect", "--out", str(out)])
    assert done.exit_code == 0, done.output
    table = pd.read_csv(out / "explanations.csv")
    assert table["frame"].tolist() == [0, 10, 20] and table["time"].tolist() == [0.0, 1.0, 2.0]  # one a second
    assert (table["status"] == "ok").all() and all((out / m).is_file() for m in table["map"])
    assert table["map"][1] == "maps/0001_clip_frame000010_face0.png"
    video = cv2.VideoCapture(str(out / "0001_clip_explained.mp4"))
    shown = []
    while (read := video.read())[0]:
        shown.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
    assert len(shown) == 3 and shown[0].shape == faces[0].shape
    # Each frame is its face under its map: like the map's panel (right half), unlike the plain frame.
    panel = np.asarray(Image.open(out / table["map"][1]).convert("RGB"))
    mapped = cv2.resize(panel[:, panel.shape[1] // 2:], (96, 96), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(shown[1].astype(int) - mapped).mean() < np.abs(faces[10].astype(int) - mapped).mean() / 2
    assert not list(out.glob(".*part*"))

    every = CliRunner().invoke(app, ["explain", str(model_path), str(clip), "--no-detect", "--every", "12",
                                     "--out", str(tmp_path / "every")])
    assert every.exit_code == 0, every.output
    assert pd.read_csv(tmp_path / "every" / "explanations.csv")["frame"].tolist() == [0, 12, 24]

    blank = _clip(tmp_path / "blank.avi", [np.full((96, 96, 3), 128, np.uint8)] * 4, fps=2.0)
    faceless = CliRunner().invoke(app, ["explain", str(model_path), str(blank), "--out", str(tmp_path / "blank")])
    assert faceless.exit_code == 0, faceless.output
    rows = pd.read_csv(tmp_path / "blank" / "explanations.csv")
    assert rows["frame"].tolist() == [0, 2] and (rows["status"] == "no face found").all()
    assert "blank.avi: no face found in the frames read" in " ".join(faceless.output.split())
    assert (tmp_path / "blank" / "0001_blank_explained.mp4").is_file()  # the frames as they are: nothing to map


@pytest.mark.parametrize("count", [5, 32, 33, 100, 1000])
def test_the_figure_shows_faces_spread_over_all_those_explained(count):
    from affectkit.pipeline.explain import _Spread

    spread, made = _Spread(32), []
    for i in range(count):
        spread.offer(lambda i=i: made.append(i) or i)
    kept = spread.kept
    assert set(kept) <= set(made) and len(made) <= 32 + 16 * max(1, int(np.log2(count)))  # few drawn in vain
    assert kept[0] == 0 and len(kept) == min(count, len(kept)) <= 32 and len(kept) >= min(count, 17)
    assert len(set(np.diff(kept))) <= 1 and kept[-1] >= count / 2  # evenly spaced, reaching the second half


def test_a_videos_maps_are_laid_back_where_its_faces_were_cut_from():
    from affectkit.inference.explain import FaceExplanation, image_heatmap
    from affectkit.inference.faces import Face, crop_face

    heatmap = np.zeros((64, 64), np.float32)
    heatmap[8:24, 36:56] = 1.0  # the crop's upper right: where the laid-back map must be read from again
    eyes = np.array([[150, 118], [190, 130], [170, 150], [155, 170], [185, 178]], np.float32)  # a tilted face
    face = Face((140, 100, 200, 190), 0.99, eyes)
    explained = FaceExplanation({}, np.zeros((64, 64, 3), np.uint8), heatmap, "Happy", 0.5, np.zeros(2), face)
    laid = image_heatmap((300, 400), [explained], margin=0.2)
    assert laid.shape == (300, 400) and laid[:, :100].max() == 0 and laid[250:].max() == 0  # nothing off the face
    again = crop_face(np.repeat(laid[..., None], 3, 2), face, margin=0.2, size=64)[..., 0]
    assert np.abs(again - heatmap)[2:-2, 2:-2].mean() < 0.05
    whole = FaceExplanation({}, np.zeros((64, 64, 3), np.uint8), heatmap, "Happy", 0.5, np.zeros(2), None)
    stretched = image_heatmap((128, 256), [whole], margin=0.2)
    assert stretched[30, 160] == 1.0 and stretched[100, 40] == 0.0


def test_the_command_maps_each_class_of_a_data_set(demo_dir, tmp_path):
    from affectkit.cli import app
    from affectkit.models.ready import write_ready_model

    model = write_ready_model("fer2013", tmp_path / "ready")  # trained on FER2013's 7 classes: no Contempt
    done = CliRunner().invoke(app, ["explain", str(model), "--data", str(demo_dir), "--split", "all",
                                    "--out", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    classes = pd.read_csv(tmp_path / "out" / "class_maps.csv")
    assert classes["label"].tolist() == list(CLASS_NAMES) and (classes["faces"] == 12).all()
    faces = pd.read_csv(tmp_path / "out" / "explanations.csv")
    assert len(faces) == 96 and (faces["target"] == faces["label"]).all()  # each face's own class, by default
    shares = faces["upper_half_share"]
    assert shares.dropna().between(0, 1).all() and shares.notna().sum() > 48
    peaks = faces[["peak_x", "peak_y"]]
    assert peaks.dropna().stack().between(0, 1).all() and (peaks.isna().all(axis=1) == shares.isna()).all()
    # Nothing in a face raises a class the model never learnt: Contempt's maps are empty, and it is said.
    assert shares[faces["label"] == "Contempt"].isna().all() and classes["empty_maps"].iloc[-1] == 12
    assert "not trained on Contempt: it gives no evidence for it" in " ".join(done.output.split())
    right = faces["predicted"] == faces["label"]
    assert classes["accuracy"].to_numpy() == pytest.approx(right.groupby(faces["label"]).mean()[list(CLASS_NAMES)])
    assert (tmp_path / "out" / "class_maps.png").stat().st_size > 20_000

    # A report maps the first faces of each class only, as many as it asks for.
    from affectkit.pipeline.explain import explain_split
    from affectkit.pipeline.run import evaluation_data

    few = explain_split(model, evaluation_data(model, demo_dir, "all", None), "all", demo_dir, tmp_path / "few",
                        per_class=2, prefix="few_")
    assert (few.table["faces"] == 2).all() and few.paths["plot"].name == "few_class_maps.png"
    assert len(pd.read_csv(tmp_path / "few" / "few_explanations.csv")) == 16
    occluded = CliRunner().invoke(app, ["explain", str(model), "--data", str(demo_dir), "--split", "all",
                                        "--per-class", "2", "--method", "occlusion", "--out", str(tmp_path / "occ")])
    assert occluded.exit_code == 0, occluded.output
    by_occlusion = pd.read_csv(tmp_path / "occ" / "class_maps.csv")
    assert (by_occlusion["faces"] == 2).all() and by_occlusion["upper_half_share"].iloc[:7].notna().all()
    assert np.isnan(by_occlusion["upper_half_share"].iloc[-1])  # Contempt: never predicted, no cover lowers it
    assert "mean occlusion by class" in " ".join(occluded.output.split())
    import affectkit

    by_pixel = affectkit.explain(model, data=demo_dir, split="all", per_class=2, method="ig", out=tmp_path / "ig")
    assert (by_pixel.table["faces"] == 2).all() and by_pixel.table["upper_half_share"].iloc[:7].notna().all()
    assert np.isnan(by_pixel.table["upper_half_share"].iloc[-1])  # Contempt: its logit is the same for any face

    with pytest.raises(AffectkitError, match="--per-class must be at least 1"):
        affectkit.explain(model, data=demo_dir, per_class=0)


@pytest.mark.parametrize("arguments, problem", [
    (["--target", "Banana"], "'Banana' is not an expression the model was trained on"),
    (["--target", "label"], "--target label explains each face's class as a data set gives it: use it with --data"),
    (["--layer", "wide"], "Unknown layer 'wide' to explain: choose auto, final, finer"),
    (["--method", "lime"], "Unknown explanation method 'lime': choose gradcam, occlusion, ig"),
    (["--method", "occlusion", "--layer", "finer"], "--layer finer chooses the feature map Grad-CAM weighs"),
    (["--method", "ig", "--layer", "final"], "integrated gradients reads the face's pixels: leave --layer out"),
    (["--per-class", "5"], "--per-class caps the faces of each class of a data set: use it with --data"),
    (["--every", "0"], "--every must be at least 1 (explain every N-th frame of a video), got 0"),
])
def test_the_command_refuses_what_it_cannot_explain(model_path, demo_dir, arguments, problem):
    from affectkit.cli import app

    photo = next((demo_dir / "images").iterdir())
    refused = CliRunner().invoke(app, ["explain", str(model_path), str(photo), "--no-detect", *arguments])
    assert isinstance(refused.exception, AffectkitError) and problem in str(refused.exception)
    both = CliRunner().invoke(app, ["explain", str(model_path), str(photo), "--data", str(demo_dir)])
    assert isinstance(both.exception, AffectkitError) and "not both" in str(both.exception)
    frames = CliRunner().invoke(app, ["explain", str(model_path), "--data", str(demo_dir), "--every", "2"])
    assert isinstance(frames.exception, AffectkitError) and "a data set's faces are images" in str(frames.exception)


def test_the_server_explains_each_face_and_loads_pytorch_for_an_onnx_model(tmp_path):
    import base64
    import io
    import shutil

    from fastapi.testclient import TestClient
    from PIL import Image

    import affectkit
    from affectkit.models import save_model
    from affectkit.serving.app import create_app

    model = save_model(_corner_reader(), tmp_path / "best_CustomCNN", Config(img_size=32, cnn_widths=[4, 4],
                                                                               head_width=8))
    photo = np.zeros((32, 32, 3), np.uint8)
    photo[:10, :10, 0] = 255  # red in the top-left corner only
    upload = io.BytesIO()
    Image.fromarray(photo).save(upload, format="PNG")
    files = [("files", ("corner.png", upload.getvalue(), "image/png"))]

    affectkit.export(model)  # served from ONNX, the map comes from the .safetensors beside it
    client = TestClient(create_app(model, detect=False, backend="onnx"))
    answered = client.post("/v1/explain", files=files, params={"detect": "false"})
    assert answered.status_code == 200, answered.text
    face = answered.json()["results"][0]["faces"][0]
    assert face["expression"] == "Happy" and face["explanation"]["target"] == "Happy"
    assert face["explanation"]["method"] == "Grad-CAM"
    assert face["explanation"]["upper_half_share"] > 0.95 and max(face["explanation"]["peak"]) < 10 / 32
    shown = Image.open(io.BytesIO(base64.b64decode(face["explanation"]["image"].split(",", 1)[1])))
    assert shown.size == (32, 32) and np.asarray(shown)[20:, 20:].sum() == 0  # black, and unmapped, far from it
    valence = client.post("/v1/explain", files=files, params={"detect": "false", "target": "valence"}).json()
    assert valence["results"][0]["faces"][0]["explanation"]["target"] == "valence"

    refused = client.post("/v1/explain", files=files, params={"target": "Banana", "detect": "false"})
    assert refused.status_code == 422 and "'Banana' is not an expression" in refused.json()["detail"]
    alone = tmp_path / "alone"
    alone.mkdir()
    onnx = Path(shutil.copy(model.with_suffix(".onnx"), alone))
    onnx_alone = TestClient(create_app(onnx, detect=False))
    lacking = onnx_alone.post("/v1/explain", files=files, params={"detect": "false"})
    assert lacking.status_code == 422 and "Grad-CAM needs the PyTorch model" in lacking.json()["detail"]
    # Occlusion asks the served ONNX model itself: no PyTorch weights needed.
    occluded = onnx_alone.post("/v1/explain", files=files, params={"detect": "false", "method": "occlusion"})
    assert occluded.status_code == 200, occluded.text
    explanation = occluded.json()["results"][0]["faces"][0]["explanation"]
    assert explanation["method"] == "occlusion" and explanation["upper_half_share"] > 0.95 and max(explanation["peak"]) < 10 / 32
    wrong = onnx_alone.post("/v1/explain", files=files, params={"method": "occlusion", "layer": "final"})
    assert wrong.status_code == 422 and "occlusion reads the face's pixels" in wrong.json()["detail"]
    pixels = onnx_alone.post("/v1/explain", files=files, params={"detect": "false", "method": "ig"})
    assert pixels.status_code == 422 and "integrated gradients needs the PyTorch model" in pixels.json()["detail"]
    by_pixel = client.post("/v1/explain", files=files, params={"detect": "false", "method": "ig"})
    assert by_pixel.status_code == 200, by_pixel.text
    explanation = by_pixel.json()["results"][0]["faces"][0]["explanation"]
    assert explanation["method"] == "integrated gradients" and explanation["upper_half_share"] == 1.0

    # The command and the API: an ONNX export alone is explained by occlusion, and Grad-CAM asks for the weights.
    Image.fromarray(photo).save(tmp_path / "corner.png")
    with pytest.raises(AffectkitError, match="Grad-CAM needs the PyTorch model .* --method occlusion"):
        affectkit.explain(onnx, tmp_path / "corner.png", detect=False)
    with pytest.raises(AffectkitError, match="integrated gradients needs the PyTorch model .* --method occlusion"):
        affectkit.explain(onnx, tmp_path / "corner.png", detect=False, method="ig")
    by_onnx = affectkit.explain(onnx, tmp_path / "corner.png", detect=False, method="occlusion", out=tmp_path / "o")
    assert by_onnx.table["upper_half_share"].item() > 0.95 and by_onnx.table["expression"].item() == "Happy"
