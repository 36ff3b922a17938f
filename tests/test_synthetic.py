"""The synthetic demo data: AffectNet layout, determinism, class balance, and landmarks that match the drawing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from affectkit.data.synthetic import IBUG_FLIP_PERMUTATION, demo_labels, make_demo_dataset, render_face

N = 48  # 6 faces per class


def _read(root: Path, sample_id: str) -> tuple[np.ndarray, int, float, float, np.ndarray]:
    ann = root / "annotations"
    image = cv2.cvtColor(cv2.imread(str(root / "images" / f"{sample_id}.jpg")), cv2.COLOR_BGR2RGB)
    label = int(np.load(ann / f"{sample_id}_exp.npy").item())
    valence = float(np.load(ann / f"{sample_id}_val.npy").item())
    arousal = float(np.load(ann / f"{sample_id}_aro.npy").item())
    landmarks = np.load(ann / f"{sample_id}_lnd.npy").reshape(68, 2)
    return image, label, valence, arousal, landmarks


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("synthetic") / "data", n=N, seed=3, progress=False)


@pytest.fixture(scope="module")
def samples(demo) -> list[tuple[np.ndarray, int, float, float, np.ndarray]]:
    return [_read(demo, str(i)) for i in range(N)]


def test_affectnet_layout_shapes_and_dtypes(demo):
    assert sorted(p.name for p in (demo / "images").iterdir()) == sorted(f"{i}.jpg" for i in range(N))
    assert len(list((demo / "annotations").iterdir())) == 4 * N
    image = cv2.imread(str(demo / "images" / "0.jpg"), cv2.IMREAD_UNCHANGED)
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8
    for kind in ("exp", "val", "aro"):  # AffectNet's 0-d string arrays
        value = np.load(demo / "annotations" / f"0_{kind}.npy")
        assert value.shape == () and value.dtype.kind == "U"
    assert np.load(demo / "annotations" / "0_exp.npy").item() in {str(c) for c in range(8)}
    landmarks = np.load(demo / "annotations" / "0_lnd.npy")
    assert landmarks.shape == (136,) and landmarks.dtype == np.float64


def test_same_seed_same_bytes_other_seed_other_faces(tmp_path):
    a = make_demo_dataset(tmp_path / "a", n=8, seed=5, progress=False)
    b = make_demo_dataset(tmp_path / "b", n=8, seed=5, progress=False, workers=2)  # in parallel: the same bytes
    c = make_demo_dataset(tmp_path / "c", n=8, seed=6, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "images" / "0.jpg").read_bytes() != (c / "images" / "0.jpg").read_bytes()


def test_written_labels_are_demo_labels(demo, samples):
    assert [s[1] for s in samples] == demo_labels(N, 3).tolist()


def test_balanced_by_default():
    assert np.bincount(demo_labels(100, 0), minlength=8).tolist() == [13, 13, 13, 13, 12, 12, 12, 12]
    assert len(set(demo_labels(100, 0)[:8].tolist())) > 1  # shuffled, not grouped by class


def test_imbalance_is_long_tailed_like_affectnet():
    counts = np.bincount(demo_labels(2000, 0, imbalance=True), minlength=8)
    assert counts.sum() == 2000
    assert counts.argmax() == 1 and counts.argmin() == 7  # Happy most, Contempt least
    assert counts[1] / counts[7] > 30
    assert np.bincount(demo_labels(96, 0, imbalance=True), minlength=8).min() >= 3


def test_valence_arousal_in_range_and_circumplex(samples):
    labels = np.array([s[1] for s in samples])
    va = np.array([(s[2], s[3]) for s in samples])
    assert np.all(np.abs(va) <= 1.0)
    assert va[labels == 1, 0].mean() > va[labels == 2, 0].mean() + 0.5  # happy vs sad valence
    assert va[labels == 3, 1].mean() > va[labels == 2, 1].mean() + 0.5  # surprise vs sad arousal


def test_landmarks_inside_image_in_ibug_order(samples):
    for *_, lm in samples:
        assert np.all((lm >= 0) & (lm <= 223))
        # Image-left before image-right, whatever the roll (at most ~20 degrees).
        assert lm[0, 0] < lm[16, 0] and lm[17, 0] < lm[26, 0] and lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0]
        assert lm[48, 0] < lm[54, 0] and lm[31, 0] < lm[35, 0]
        assert lm[19, 1] < lm[37, 1] < lm[30, 1] < lm[51, 1] < lm[57, 1] < lm[8, 1]  # brow, eye, nose, mouth, chin


def _edge_strength(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    magnitude = cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    return cv2.GaussianBlur(magnitude, (0, 0), 2.0)


def test_landmarks_sit_on_drawn_edges(samples):
    """Features are drawn from the landmarks: edges are stronger at them than at the same points moved aside."""
    wins = 0
    for image, *_, lm in samples:
        edges = _edge_strength(image)
        inner = lm[17:]  # brows, nose, eyes, mouth

        def score(points: np.ndarray) -> float:
            xy = np.clip(np.round(points).astype(int), 0, 223)
            return float(edges[xy[:, 1], xy[:, 0]].mean())

        wins += score(inner) > 1.3 * score(inner + [9.0, 7.0])
    assert wins >= 0.8 * len(samples)  # occluders, clutter and dark lighting blur a few


def _polygon_mean(image: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return image[mask.astype(bool)].mean(0)


def test_eyes_and_lips_differ_from_the_skin_beside_them(samples):
    """The pixels inside the eye and lip landmark polygons are not skin, unlike a cheek patch of the same face."""
    distinct = 0
    for image, *_, lm in samples:
        img = image.astype(np.float32)
        cheek = np.array([_polygon_mean(img, np.vstack([lm[k], lm[31], lm[48]])) for k in (2, 3)]).mean(0)
        mouth = _polygon_mean(img, lm[48:60])
        eyes = (_polygon_mean(img, lm[36:42]) + _polygon_mean(img, lm[42:48])) / 2
        distinct += min(np.abs(mouth - cheek).sum(), np.abs(eyes - cheek).sum()) > 30
    assert distinct >= 0.8 * len(samples)  # occluders and dark lighting may hide a few


def test_flip_permutation_is_the_300w_mirror_involution():
    perm = IBUG_FLIP_PERMUTATION
    assert len(perm) == 68 and sorted(perm) == list(range(68))
    assert all(perm[perm[k]] == k for k in range(68))
    for a, b in [(0, 16), (8, 8), (17, 26), (21, 22), (27, 27), (30, 30), (31, 35), (33, 33), (36, 45), (39, 42),
                 (40, 47), (48, 54), (51, 51), (55, 59), (57, 57), (60, 64), (62, 62), (65, 67), (66, 66)]:
        assert perm[a] == b and perm[b] == a


def test_mirrored_landmarks_fit_the_mirrored_face(samples):
    """Flipping the image and permuting the points keeps every point on its feature (e.g. 36 stays an outer corner)."""
    image, *_, lm = samples[0]
    flipped = lm[list(IBUG_FLIP_PERMUTATION)] * [-1.0, 1.0] + [223.0, 0.0]  # pixel centres sit on integers
    assert flipped[36, 0] < flipped[39, 0] < flipped[42, 0] < flipped[45, 0]
    assert np.allclose(_polygon_mean(image[:, ::-1], flipped[48:60]), _polygon_mean(image, lm[48:60]), atol=3)


def test_one_person_and_one_sequence_can_be_held_fixed():
    """``person`` fixes who is drawn and ``intensity`` how strongly (CK+-shaped data: people filmed several times,
    frames of one sequence): two frames differ less than the same frame of another person, and only in how happy."""
    def frame(person_seed: int, intensity: float):
        return render_face(1, np.random.default_rng(5), 112, intensity=intensity,
                           person=np.random.default_rng(person_seed))

    def pixels_apart(a, b) -> float:
        return float(np.abs(a[0].astype(int) - b[0].astype(int)).mean())

    weak, strong, other_person = frame(1, 0.6), frame(1, 1.0), frame(2, 1.0)
    assert 0 < pixels_apart(weak, strong) < pixels_apart(strong, other_person)
    assert np.isclose(strong[2] - weak[2], 0.8 * 0.4)  # valence: Happy's circumplex centre times the extra strength
    assert np.array_equal(frame(1, 1.0)[0], strong[0])


def test_intensity_range_sets_how_far_expressions_move_from_neutral(tmp_path):
    """At strength 0 every class draws neutral's geometry; at 1 only neutral keeps it. The draws are otherwise the
    same, so a neutral face's landmarks do not move between the two sets."""
    common = {"n": 16, "seed": 2, "img_size": 64, "progress": False}
    flat = make_demo_dataset(tmp_path / "flat", intensity_range=(0.0, 0.0), **common)
    full = make_demo_dataset(tmp_path / "full", intensity_range=(1.0, 1.0), **common)
    for i in range(16):
        _, label, valence, arousal, flat_landmarks = _read(flat, str(i))
        full_landmarks = _read(full, str(i))[4]
        assert abs(valence) < 0.25 and abs(arousal) < 0.25  # no class's valence/arousal centre at strength 0
        assert np.allclose(flat_landmarks, full_landmarks) == (label == 0), (i, label)
    with pytest.raises(ValueError, match="intensity_range"):
        make_demo_dataset(tmp_path / "bad", intensity_range=(0.6, 0.2), **common)


def test_faces_render_at_the_small_sizes_of_real_sets():
    from affectkit.data.synthetic import sample_rng

    for size in (24, 48):  # FER2013's 48 px and below: a stroke's width range once fell below its 1-px floor
        for i in range(64):
            image, landmarks, _, _ = render_face(i % 8, sample_rng(3, i), size)
            assert image.shape == (size, size, 3) and (landmarks >= 0).all() and (landmarks < size).all()
