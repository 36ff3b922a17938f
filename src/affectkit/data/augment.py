"""Train-time augmentation of an image together with its landmarks, with the spec's Keras-style parameters."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch

from affectkit.config import AugmentationConfig
from affectkit.data.landmarks import hflip_landmarks

BORDER_MODES = {
    "nearest": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,
    "wrap": cv2.BORDER_WRAP,
}


def build_affine(aug: AugmentationConfig) -> A.Affine:
    """Rotation, shift, zoom and shear as Keras' ImageDataGenerator reads them (shear_range in degrees)."""
    return A.Affine(
        rotate=(-aug.rotation_range, aug.rotation_range),
        translate_percent={"x": (-aug.width_shift_range, aug.width_shift_range),
                           "y": (-aug.height_shift_range, aug.height_shift_range)},
        scale=(1 - aug.zoom_range, 1 + aug.zoom_range),
        shear=(-aug.shear_range, aug.shear_range),
        border_mode=BORDER_MODES[aug.fill_mode],
        p=1.0,
    )


# The erased rectangle takes ImageNet's mean colour: what torchvision's RandomErasing(value=0) gives after
# normalisation, the usual setting in expression-recognition training code.
ERASE_FILL = (124, 116, 104)


def build_erasing(aug: AugmentationConfig) -> A.Compose | None:
    """Random erasing (Zhong et al. 2020) of one rectangle; the landmarks stay where they are."""
    if aug.random_erasing <= 0:
        return None
    return A.Compose([A.Erasing(scale=(0.02, 0.25), ratio=(0.3, 3.3), fill=ERASE_FILL, p=aug.random_erasing)])


def build_degradation(aug: AugmentationConfig) -> A.OneOf | None:
    """One of the ways a face loses detail before it reaches a model, drawn with probability ``aug.degrade``: a
    low-resolution capture scaled back up, JPEG compression, defocus blur, or sensor noise. The severities stay
    within what leaves an expression readable on a crop of the training size."""
    if aug.degrade <= 0:
        return None
    return A.OneOf([
        A.Downscale(scale_range=(0.3, 0.6), interpolation_pair={"downscale": cv2.INTER_AREA,
                                                               "upscale": cv2.INTER_LINEAR}),
        A.ImageCompression(quality_range=(20, 70)),
        A.GaussianBlur(sigma_limit=(0.5, 1.5)),
        A.GaussNoise(std_range=(0.02, 0.08)),
    ], p=aug.degrade)


# A face mask's colours (RGB): surgical blue, white, black, navy and beige cloth. No mid grey: `affectkit
# robustness` hides the lower face in flat grey, a mask that training never drew.
MASK_COLOURS = ((160, 200, 225), (240, 240, 240), (35, 35, 40), (40, 50, 90), (215, 195, 170))


def _between(a: np.ndarray, b: np.ndarray, share: float) -> np.ndarray:
    return a + (b - a) * share


def mask_outline(landmarks: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """The outline (K, 2), in pixels, of a face mask worn over the nose, mouth and chin, its fit drawn from ``rng``.
    With the 68 landmarks: from the nose bridge (between points 28 and 30) to the cheeks (jaw points 1-2 and 15-14)
    and round the jaw a little below it. Without: a half-ellipse hanging from 45-60% of the crop's height, where a
    face crop puts the nose bridge, and reaching below its bottom edge."""
    height, width = shape[:2]
    if landmarks.shape == (68, 2) and np.isfinite(landmarks).all():
        jaw, fit = landmarks[:17], rng.uniform(0, 0.5)
        bridge = _between(landmarks[28], landmarks[30], rng.uniform(0, 0.6))
        centre = landmarks[27:36].mean(0)  # the nose: the jaw is pushed out from it, as cloth stands off the chin
        lower = centre + (jaw[2:15] - centre) * rng.uniform(1.02, 1.08)
        return np.vstack([_between(jaw[1], jaw[2], fit), lower, _between(jaw[15], jaw[14], fit), bridge])
    top, half = rng.uniform(0.45, 0.60) * height, rng.uniform(0.30, 0.40) * width
    centre_x, depth = width * (0.5 + rng.uniform(-0.03, 0.03)), (height - top) * rng.uniform(0.95, 1.15)
    angles = np.linspace(0, np.pi, 19)
    arc = np.stack([centre_x + half * np.cos(angles), top + depth * np.sin(angles)], 1)
    return np.vstack([arc, [centre_x, top - 0.04 * height]])


def draw_face_mask(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (uint8 RGB) with a face mask drawn over its lower face (:func:`mask_outline`): one of
    ``MASK_COLOURS``, lit a little unevenly from one side, half of them with a surgical mask's pleats."""
    height, width = image.shape[:2]
    outline = np.round(mask_outline(landmarks, image.shape, rng) * 16).astype(np.int32)  # 4 fractional bits
    cover = np.zeros((height, width), np.uint8)
    cv2.fillPoly(cover, [outline], 255, cv2.LINE_AA, shift=4)
    colour = np.array(MASK_COLOURS[rng.integers(len(MASK_COLOURS))], np.float32) * rng.uniform(0.85, 1.1)
    light = 1 + rng.uniform(-0.15, 0.15) * np.linspace(-1, 1, width, dtype=np.float32)
    cloth = np.clip(colour * light[None, :, None], 0, 255) * np.ones((height, 1, 1), np.float32)
    if rng.random() < 0.5:
        top, bottom = outline[:, 1].min() / 16, outline[:, 1].max() / 16
        for y in np.linspace(top, bottom, 5)[1:-1]:
            cv2.line(cloth, (0, int(y)), (width - 1, int(y)), (colour * 0.8).tolist(), max(1, height // 64))
    alpha = cover[..., None].astype(np.float32) / 255
    return np.round(image * (1 - alpha) + cloth * alpha).astype(np.uint8)


class TrainAugmenter:
    """Random horizontal flip (landmark identities mirrored too), a random affine warp, then optionally a face mask,
    RandAugment or TrivialAugment, degradation and random erasing."""

    def __init__(self, aug: AugmentationConfig, seed: int | None = None):
        self.aug = aug
        self.affine = build_affine(aug)  # its parameters drawn and applied by hand: see _draw
        self.policy = _pixel_policy(aug)
        self.erasing = build_erasing(aug)
        self.degradation = build_degradation(aug)
        self.rng = np.random.default_rng(seed)
        if seed is not None:  # albumentations draws from its own generator, seeded apart from ours
            self._seed_albumentations(seed)

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flipped, warp, landmarks = self._draw(image, landmarks)
        if flipped:
            image = image[:, ::-1]
        image = self.affine.apply(np.ascontiguousarray(image), matrix=warp, output_shape=image.shape[:2])
        if self.aug.face_mask > 0 and self.rng.random() < self.aug.face_mask:  # worn in the scene: lit, blurred with it
            image = draw_face_mask(image, landmarks, self.rng)
        if self.policy is not None:
            image = self.policy(image)
        if self.degradation is not None:
            image = self.degradation(image=np.ascontiguousarray(image))["image"]
        if self.erasing is not None:
            image = self.erasing(image=np.ascontiguousarray(image))["image"]
        return image, landmarks

    def draw(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What ``__call__`` would do, drawn but not applied to the pixels: ``(matrix, landmarks)``, the 3x3 map from
        input to output pixel coordinates (flip, then the affine warp) for :func:`warp_images` to apply on the GPU,
        and the landmarks moved as ``__call__`` moves them. The same seed draws the same flips and warps."""
        if (self.policy is not None or self.erasing is not None or self.degradation is not None
                or self.aug.face_mask > 0):
            raise ValueError("only the flip and the affine warp can be drawn for the GPU")
        flipped, warp, landmarks = self._draw(image, landmarks)
        if flipped:
            warp = warp @ np.array([[-1.0, 0.0, image.shape[1] - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        return warp.astype(np.float32), landmarks

    def _draw(self, image: np.ndarray, landmarks: np.ndarray) -> tuple[bool, np.ndarray, np.ndarray]:
        """(flip?, the warp's 3x3 matrix, the landmarks flipped and warped). The landmarks are moved by the matrix
        here rather than by albumentations, whose keypoints under a reflecting border come back with their
        reflections (nine points for one)."""
        has_points = bool(np.isfinite(landmarks).all())
        flipped = bool(self.aug.horizontal_flip and self.rng.random() < 0.5)
        if flipped and has_points:
            landmarks = hflip_landmarks(landmarks, image.shape[1])
        warp = self.affine.get_params_dependent_on_data({"shape": image.shape}, {})["matrix"]
        if has_points:
            landmarks = (landmarks @ warp[:2, :2].T + warp[:2, 2]).astype(np.float32)
        return flipped, warp, landmarks

    def reseed(self, seed: int) -> None:
        """Each DataLoader worker gets its own stream (see ``worker_init_fn``)."""
        self.rng = np.random.default_rng(seed)
        self._seed_albumentations(seed)

    def _seed_albumentations(self, seed: int) -> None:
        self.affine.set_random_seed(seed)
        if self.erasing is not None:
            self.erasing.set_random_seed(seed + 1)
        if self.degradation is not None:
            self.degradation.set_random_seed(seed + 2)


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


# grid_sample's padding for each fill_mode: border repeats the edge pixel (cv2's BORDER_REPLICATE), zeros is a
# constant 0 (A.Affine's default fill), reflection about the edge pixels' centres (align_corners=True) is
# BORDER_REFLECT_101.
GRID_PADDING = {"nearest": "border", "constant": "zeros", "reflect": "reflection"}


def warp_images(images: torch.Tensor, matrices: torch.Tensor, fill_mode: str = "nearest") -> torch.Tensor:
    """uint8 (N, 3, H, W) images warped by (N, 3, 3) input-to-output pixel maps (:meth:`TrainAugmenter.draw`), as
    ``cv2.warpAffine`` with bilinear interpolation does, in one batched ``grid_sample`` on the images' device.
    Returns float32 in 0..255 (not rounded back to uint8)."""
    height, width = images.shape[-2:]
    # affine_grid works in [-1, 1] coordinates whose ends are the edge pixels' centres (align_corners=True).
    to_unit = torch.tensor([[2.0 / max(width - 1, 1), 0.0, -1.0], [0.0, 2.0 / max(height - 1, 1), -1.0],
                            [0.0, 0.0, 1.0]], dtype=torch.float64, device=images.device)
    output_to_input = torch.linalg.inv(matrices.to(images.device, torch.float64))
    theta = (to_unit @ output_to_input @ torch.linalg.inv(to_unit))[:, :2].float()
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=True)
    return torch.nn.functional.grid_sample(images.float(), grid, mode="bilinear",
                                           padding_mode=GRID_PADDING[fill_mode], align_corners=True)
