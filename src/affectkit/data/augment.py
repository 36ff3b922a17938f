"""Train-time augmentation of an image together with its landmarks, with the spec's Keras-style parameters."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from affectkit.config import AugmentationConfig
from affectkit.data.landmarks import hflip_landmarks

BORDER_MODES = {
    "nearest": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,
    "wrap": cv2.BORDER_WRAP,
}


def build_affine(aug: AugmentationConfig) -> A.Compose:
    """Rotation, shift, zoom and shear as Keras' ImageDataGenerator reads them (shear_range in degrees)."""
    affine = A.Affine(
        rotate=(-aug.rotation_range, aug.rotation_range),
        translate_percent={"x": (-aug.width_shift_range, aug.width_shift_range),
                           "y": (-aug.height_shift_range, aug.height_shift_range)},
        scale=(1 - aug.zoom_range, 1 + aug.zoom_range),
        shear=(-aug.shear_range, aug.shear_range),
        border_mode=BORDER_MODES[aug.fill_mode],
        p=1.0,
    )
    return A.Compose([affine], keypoint_params=A.KeypointParams(format="xy", remove_invisible=False))


# The erased rectangle takes ImageNet's mean colour: what torchvision's RandomErasing(value=0) gives after
# normalisation, the usual setting in expression-recognition training code.
ERASE_FILL = (124, 116, 104)


def build_erasing(aug: AugmentationConfig) -> A.Compose | None:
    """Random erasing (Zhong et al. 2020) of one rectangle; the landmarks stay where they are."""
    if aug.random_erasing <= 0:
        return None
    return A.Compose([A.Erasing(scale=(0.02, 0.25), ratio=(0.3, 3.3), fill=ERASE_FILL, p=aug.random_erasing)])


class TrainAugmenter:
    """Random horizontal flip (landmark identities mirrored too), a random affine warp, then optionally RandAugment
    or TrivialAugment and random erasing."""

    def __init__(self, aug: AugmentationConfig, seed: int | None = None):
        self.aug = aug
        self.affine = build_affine(aug)
        self.policy = _pixel_policy(aug)
        self.erasing = build_erasing(aug)
        self.rng = np.random.default_rng(seed)
        if seed is not None:  # albumentations draws from its own generator, seeded apart from ours
            self._seed_albumentations(seed)

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        has_points = bool(np.isfinite(landmarks).all())
        if self.aug.horizontal_flip and self.rng.random() < 0.5:
            image = image[:, ::-1]
            if has_points:
                landmarks = hflip_landmarks(landmarks, image.shape[1])
        points = landmarks if has_points else np.zeros((0, 2), dtype=np.float32)
        out = self.affine(image=np.ascontiguousarray(image), keypoints=points)
        image = out["image"]
        if has_points:
            landmarks = np.asarray(out["keypoints"], dtype=np.float32).reshape(68, 2)
        if self.policy is not None:
            image = self.policy(image)
        if self.erasing is not None:
            image = self.erasing(image=np.ascontiguousarray(image))["image"]
        return image, landmarks

    def reseed(self, seed: int) -> None:
        """Each DataLoader worker gets its own stream (see ``worker_init_fn``)."""
        self.rng = np.random.default_rng(seed)
        self._seed_albumentations(seed)

    def _seed_albumentations(self, seed: int) -> None:
        self.affine.set_random_seed(seed)
        if self.erasing is not None:
            self.erasing.set_random_seed(seed + 1)


def _pixel_policy(aug: AugmentationConfig):
    """RandAugment (timm) or TrivialAugment (torchvision) on uint8 RGB; None when neither is asked for."""
    if aug.rand_augment:
        from PIL import Image
        from timm.data.auto_augment import rand_augment_transform

        transform = rand_augment_transform(aug.rand_augment, {"translate_const": 20, "img_mean": (124, 116, 104)})
        return lambda img: np.asarray(transform(Image.fromarray(img)))
    if aug.trivial_augment:
        import torch
        from torchvision.transforms import v2

        transform = v2.TrivialAugmentWide()
        return lambda img: transform(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    return None
