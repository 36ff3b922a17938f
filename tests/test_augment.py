import cv2
import numpy as np

from affectkit.config import AugmentationConfig
from affectkit.data.augment import ERASE_FILL, TrainAugmenter
from affectkit.data.landmarks import IBUG_FLIP_PERMUTATION, hflip_landmarks


def test_flip_permutation_is_an_involution_that_swaps_sides():
    perm = np.array(IBUG_FLIP_PERMUTATION)
    assert sorted(perm) == list(range(68)) and (perm[perm] == np.arange(68)).all()
    assert perm[36] == 45 and perm[48] == 54 and perm[0] == 16 and perm[30] == 30 and perm[57] == 57


def test_hflip_mirrors_coordinates_and_identities():
    pts = np.random.default_rng(0).uniform(0, 100, (68, 2)).astype(np.float32)
    flipped = hflip_landmarks(pts, 100)
    assert np.allclose(flipped[45], [100 - pts[36, 0], pts[36, 1]])
    assert np.allclose(hflip_landmarks(flipped, 100), pts)


def _dot_image(points, size=96):
    img = np.zeros((size, size, 3), np.uint8)
    for x, y in points.round().astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = 255
    return img


def test_image_and_landmarks_move_together():
    rng = np.random.default_rng(1)
    pts = rng.uniform(30, 66, (68, 2)).astype(np.float32)
    pts[0] = [30, 48]  # one distinctive point, alone in the image
    aug = TrainAugmenter(AugmentationConfig(), seed=3)
    for _ in range(10):
        img = _dot_image(pts[:1])
        out, moved = aug(img, pts)
        assert out.shape == img.shape and moved.shape == (68, 2)
        bright = np.argwhere(out[..., 0] > 100)
        if len(bright) == 0:
            continue  # the dot left the image
        centre = bright.mean(0)[::-1]
        # After a flip, landmark 0 (jaw start) becomes index 16 of the mirrored face.
        candidates = [moved[0], moved[16]]
        assert min(np.linalg.norm(centre - c) for c in candidates) < 3.0


def test_missing_landmarks_stay_missing():
    aug = TrainAugmenter(AugmentationConfig(), seed=0)
    out, pts = aug(np.zeros((32, 32, 3), np.uint8), np.full((68, 2), np.nan, np.float32))
    assert out.shape == (32, 32, 3) and np.isnan(pts).all()


def test_same_seed_gives_the_same_warps_in_process():
    """With num_workers 0 no worker_init_fn reseeds the augmenter, so its constructor seed must reach albumentations."""
    rng = np.random.default_rng(2)
    img = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    pts = rng.uniform(10, 38, (68, 2)).astype(np.float32)
    runs = []
    for _ in range(2):
        aug = TrainAugmenter(AugmentationConfig(), seed=7)
        runs.append([aug(img, pts) for _ in range(3)])
    for (a_img, a_pts), (b_img, b_pts) in zip(*runs):
        assert np.array_equal(a_img, b_img) and np.array_equal(a_pts, b_pts)
    other = TrainAugmenter(AugmentationConfig(), seed=8)
    assert not all(np.array_equal(other(img, pts)[0], a_img) for a_img, _ in runs[0])


def _still(**pixel_operation: float) -> AugmentationConfig:
    """No flip and no warp: the pixel operation under test alone."""
    return AugmentationConfig(rotation_range=0, width_shift_range=0, height_shift_range=0, zoom_range=0,
                              shear_range=0, horizontal_flip=False, **pixel_operation)


def test_degrade_loses_detail_the_way_cameras_do_and_keeps_the_face_and_its_landmarks():
    from affectkit.data.synthetic import render_face, sample_rng

    still = _still(degrade=1.0)
    img, pts, *_ = render_face(1, sample_rng(0, 3), 96, intensity=0.8)
    pts = pts.astype(np.float32)
    outs = [TrainAugmenter(still, seed=seed)(img, pts) for seed in range(24)]
    again = [TrainAugmenter(still, seed=seed)(img, pts)[0] for seed in range(24)]
    assert all(np.array_equal(a, b) for (a, _), b in zip(outs, again))  # one seed, one draw
    changes = [np.abs(out.astype(np.float32) - img).mean() for out, _ in outs]
    # Every face altered, none beyond recognition (each operation at its harshest changes a grey level by ~20).
    assert min(changes) > 0.5 and max(changes) < 25
    # Detail lost: the image's fine structure (its Laplacian) weakens, except where noise is added.
    sharpness = [cv2.Laplacian(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for out, _ in outs]
    original = cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    assert sum(s < original for s in sharpness) >= 8 and sum(s > original for s in sharpness) >= 2
    assert all(np.allclose(moved, pts) for _, moved in outs)
    off = TrainAugmenter(still.model_copy(update={"degrade": 0.0}), seed=0)
    assert np.array_equal(off(img, pts)[0], img)


def test_random_erasing_blanks_one_rectangle_in_the_mean_colour_and_keeps_landmarks():
    still = _still(random_erasing=1.0)
    img = np.full((64, 64, 3), 255, np.uint8)
    pts = np.random.default_rng(0).uniform(10, 54, (68, 2)).astype(np.float32)
    aug = TrainAugmenter(still, seed=0)
    for _ in range(5):
        out, moved = aug(img, pts)
        erased = (out == np.array(ERASE_FILL, np.uint8)).all(-1)
        rows, cols = np.flatnonzero(erased.any(1)), np.flatnonzero(erased.any(0))
        assert 0.02 * 64 * 64 * 0.5 <= erased.sum() <= 0.25 * 64 * 64 * 1.05
        assert erased[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # one solid rectangle
        assert (out[~erased] == 255).all() and np.allclose(moved, pts)
    off = TrainAugmenter(still.model_copy(update={"random_erasing": 0.0}), seed=0)
    assert np.array_equal(off(img, pts)[0], img)


def test_a_face_mask_covers_nose_mouth_and_chin_where_the_landmarks_put_them_and_leaves_the_eyes():
    from affectkit.data.synthetic import render_face, sample_rng

    still = _still(face_mask=1.0)
    colours = set()
    for seed in range(12):
        img, pts, *_ = render_face(seed % 8, sample_rng(0, seed), 96, intensity=0.8)
        pts = pts.astype(np.float32)
        out, moved = TrainAugmenter(still, seed=seed)(img, pts)
        assert np.array_equal(out, TrainAugmenter(still, seed=seed)(img, pts)[0]) and np.array_equal(moved, pts)
        changed = np.abs(out.astype(int) - img).sum(-1) > 0
        at = lambda k: changed[int(round(pts[k, 1])), int(round(pts[k, 0]))]  # noqa: E731
        assert all(at(k) for k in (30, 33, 51, 57, 62, 8)), seed  # nose tip and base, the lips, the chin
        assert not any(at(k) for k in range(36, 48)) and not changed[: int(pts[27, 1])].any(), seed  # eyes, brow
        colours.add(tuple(out[int(pts[62, 1]), int(pts[62, 0])] // 32))
    assert len(colours) >= 3  # one of several cloths each time
    off = TrainAugmenter(still.model_copy(update={"face_mask": 0.0}), seed=0)
    assert np.array_equal(off(img, pts)[0], img)


def test_a_face_without_landmarks_gets_its_mask_where_a_crop_frames_the_lower_face():
    still = _still(face_mask=1.0)
    img = np.full((64, 64, 3), 128, np.uint8)
    unknown = np.full((68, 2), np.nan, np.float32)
    shares = []
    for seed in range(10):
        out, _ = TrainAugmenter(still, seed=seed)(img, unknown)
        changed = (out != 128).any(-1)
        rows = np.flatnonzero(changed.any(1))
        assert rows[0] >= 0.40 * 64 and rows[-1] == 63  # from about the nose bridge to the crop's bottom edge
        assert changed[-1, 32] and changed[40:, 26:38].all() and not changed[:, :2].any()  # mouth, chin; not the edges
        shares.append(changed.mean())
    assert 0.15 < min(shares) and max(shares) < 0.45 and len(set(shares)) > 5  # a fit of its own each time
