"""Fixed corruptions of face crops, for measuring how a model holds up on faces that lose detail or light before
they reach it (``affectkit robustness``), each at three fixed severities: the ways ``augmentation.degrade`` degrades
a training face (a low-resolution capture scaled back up, JPEG compression, defocus blur, sensor noise; the same
albumentations transforms, their ranges pinned to one value), under-exposure, and the lower face hidden as a face
mask hides it.

A corruption acts on the aligned crop at the model's input size, as the model receives a face. Blur is set for a
112-pixel crop and scaled with the crop, so that it takes away the same share of the face's detail at any size. The
mask covers a share of the crop's height from its bottom edge in flat grey: the chin, then the mouth, then the nose,
as a worn mask hides them (which of them each share reaches depends on how the crops are framed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

SEVERITIES = (1, 2, 3)
BLUR_REFERENCE_SIDE = 112  # the crop side the blur settings are given for
MASK_GREY = 128  # the mask's flat colour


@dataclass(frozen=True)
class Corruption:
    """One corruption: its setting at each severity (1 mild to 3 harsh), how a setting reads, its transform, and the
    training option that draws faces like it (None where none does)."""

    settings: tuple[float, float, float]
    describe: Callable[[float, int], str]  # (setting, crop side) -> "JPEG quality 15"
    transform: Callable[[float, int], A.BasicTransform]  # (setting, crop side) -> the transform
    remedy: str | None = None  # a config change, "augmentation.degrade=0.3"


def _blur_sigma(setting: float, side: int) -> float:
    return setting * side / BLUR_REFERENCE_SIDE


def _lower_face_covered(share: float) -> A.Lambda:
    def cover(image: np.ndarray, **_: object) -> np.ndarray:
        covered = image.copy()
        covered[image.shape[0] - round(share * image.shape[0]):] = MASK_GREY
        return covered

    return A.Lambda(image=cover, p=1.0)


DEGRADE = "augmentation.degrade=0.3"  # trains on faces downscaled, compressed, blurred or noised, as the first four

CORRUPTIONS: dict[str, Corruption] = {
    "low-resolution": Corruption(
        (2, 3, 4), lambda factor, side: f"{side // int(factor)} px wide, scaled back up",
        lambda factor, _: A.Downscale(scale_range=(1 / factor, 1 / factor), p=1.0, interpolation_pair={
            "downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}), DEGRADE),
    "jpeg": Corruption(
        (50, 30, 15), lambda quality, _: f"JPEG quality {quality:g}",
        lambda quality, _: A.ImageCompression(quality_range=(int(quality), int(quality)), p=1.0), DEGRADE),
    "blur": Corruption(
        (0.75, 1.5, 2.5), lambda sigma, side: f"Gaussian blur, sigma {_blur_sigma(sigma, side):.2g} px",
        lambda sigma, side: A.GaussianBlur(sigma_limit=(_blur_sigma(sigma, side),) * 2, p=1.0), DEGRADE),
    "noise": Corruption(
        (8, 16, 24), lambda std, _: f"Gaussian noise, sigma {std:g} grey levels",
        lambda std, _: A.GaussNoise(std_range=(std / 255, std / 255), p=1.0), DEGRADE),
    "dark": Corruption(
        (0.6, 0.4, 0.25), lambda share, _: f"{share:.0%} of the light",
        lambda share, _: A.MultiplicativeNoise(multiplier=(share, share), p=1.0)),
    "mask": Corruption(
        (0.3, 0.4, 0.5), lambda share, _: f"lower {share:.0%} of the crop covered",
        lambda share, _: _lower_face_covered(share), "augmentation.face_mask=0.3"),
}


def check_corruptions(names: Sequence[str], severities: Sequence[int]) -> None:
    """Refuse an unknown corruption or severity, naming the known ones."""
    if unknown := [name for name in names if name not in CORRUPTIONS]:
        raise ValueError(f"unknown corruption {', '.join(map(repr, unknown))}: choose from {', '.join(CORRUPTIONS)}")
    if wrong := [s for s in severities if s not in SEVERITIES]:
        raise ValueError(f"severity {', '.join(map(str, wrong))} is not one of {', '.join(map(str, SEVERITIES))}")
    if not names or not severities:
        raise ValueError("name at least one corruption and one severity")


def setting_of(name: str, severity: int, side: int) -> str:
    """How ``name`` at ``severity`` reads on a crop of ``side`` pixels ("JPEG quality 15")."""
    corruption = CORRUPTIONS[name]
    return corruption.describe(corruption.settings[severity - 1], side)


class CorruptedFaces:
    """A read-only view of uint8 face crops (N, S, S, 3) that returns them corrupted. A face's random draw (the
    noise) depends on ``seed`` and its position only, so a face reads the same in any batch and any order."""

    def __init__(self, images: np.ndarray, name: str, severity: int, seed: int = 0):
        check_corruptions([name], [severity])
        self.images, self.seed = images, seed
        corruption = CORRUPTIONS[name]
        self.pipeline = A.Compose([corruption.transform(corruption.settings[severity - 1], images.shape[1])])

    @property
    def shape(self) -> tuple[int, ...]:
        return self.images.shape

    @property
    def dtype(self) -> np.dtype:
        return self.images.dtype

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, positions: int | np.ndarray | Sequence[int]) -> np.ndarray:
        if np.ndim(positions) == 0:
            return self[[positions]][0]
        positions = np.asarray(positions)
        faces = np.asarray(self.images[positions])
        corrupted = np.empty_like(faces)
        for i, (position, face) in enumerate(zip(positions, faces)):
            self.pipeline.set_random_seed(self.seed * len(self.images) + int(position))
            corrupted[i] = self.pipeline(image=face)["image"]
        return corrupted
