"""What :meth:`Predictor.predict` takes and gives back: images in any common form in, one result per face out, with
a pandas form whose columns match ``affectkit predict --out results.csv``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from affectkit.errors import AffectkitError
from affectkit.inference.images import FILE_MAX_PIXELS, as_rgb_uint8, decode_image, read_image, rgb_image
from affectkit.inference.media import UNCERTAINTY_COLUMNS, expand_inputs, is_video

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from PIL import Image

ImageInput = Union[str, Path, bytes, np.ndarray, "torch.Tensor", "Image.Image"]


def gather_images(inputs: ImageInput | Sequence[ImageInput], bgr: bool = False) -> list[tuple[str, np.ndarray]]:
    """``(source, RGB uint8 array)`` per image: files, folders (their images, recursively), an image file's bytes,
    arrays (H x W x 3, H x W grey, or N x H x W x 3 for several; in OpenCV's BGR order where ``bgr``; see
    :func:`as_rgb_uint8` for the values taken), PyTorch tensors (C x H x W, or N x C x H x W) and PIL images, alone
    or in a list or tuple."""
    from PIL import Image

    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    images: list[tuple[str, np.ndarray]] = []
    for i, item in enumerate(items):
        if isinstance(item, (str, Path)):
            for file in expand_inputs([item], videos=False):
                if is_video(file):
                    raise AffectkitError(f"{file} is a video: predict_video() (or `affectkit predict`) reads "
                                         "videos frame by frame.")
                images.append((str(file), read_image(file)))
        elif isinstance(item, (bytes, bytearray, memoryview)):
            images.append((f"bytes {i}", decode_image(bytes(item), name=f"bytes {i}", max_pixels=FILE_MAX_PIXELS)))
        elif isinstance(item, np.ndarray) or _is_tensor(item):
            array, kind = (_channels_last(item), "tensor") if _is_tensor(item) else (item, "array")
            arrays = list(array) if array.ndim == 4 else [array]
            images += [(f"{kind} {i}" + (f"[{j}]" if array.ndim == 4 else ""), _from_bgr(as_rgb_uint8(a), bgr))
                       for j, a in enumerate(arrays)]
        elif isinstance(item, Image.Image):
            images.append((f"image {i}", np.asarray(rgb_image(item))))
        else:
            raise AffectkitError(f"A {type(item).__name__} is not an image: give a file or folder path, an image "
                                 "file's bytes, an RGB array, a PyTorch tensor or a PIL image.")
    if not images:
        raise AffectkitError("No images to predict: the inputs are empty (or folders without images).")
    return images


def _is_tensor(item: Any) -> bool:
    return type(item).__module__.startswith("torch") and hasattr(item, "detach")


def _channels_last(tensor: Any) -> np.ndarray:
    """A tensor's values as a channels-last array: PyTorch holds an image as C x H x W (a batch N x C x H x W); one
    made from a NumPy image (``torch.from_numpy``) is H x W x C already."""
    array = tensor.detach().cpu().numpy()
    channels = (1, 3, 4)
    if array.ndim == 2 or (array.ndim in (3, 4) and array.shape[-1] in channels and array.shape[-3] not in channels):
        return array
    if array.ndim in (3, 4) and array.shape[-3] in channels:
        return np.moveaxis(array, -3, -1)
    raise AffectkitError(f"Expected a C x H x W (or N x C x H x W) image tensor, got shape {tuple(tensor.shape)}.")


def _from_bgr(image: np.ndarray, bgr: bool) -> np.ndarray:
    """An RGB image from OpenCV's BGR order (``cv2.imread``, ``VideoCapture.read``) where ``bgr``."""
    return np.ascontiguousarray(image[..., ::-1]) if bgr and image.ndim == 3 else image


@dataclass(frozen=True)
class FaceResult:
    """One face: its image, its place there, the expression with the class probabilities, valence and arousal."""

    source: str  # the image's file, or "array 0" / "image 1" for an input held in memory
    face: int  # position among the faces found in its image
    expression: str | None  # None (and no probabilities) from a valence/arousal model
    confidence: float | None
    probabilities: dict[str, float]
    valence: float | None  # None from an expression model (trained on faces without valence/arousal)
    arousal: float | None
    box: tuple[int, int, int, int] | None  # x1, y1, x2, y2 in the image's pixels; None without face detection
    uncertainty: dict[str, float | None] | None = None  # entropy, valence_std, arousal_std under MC dropout
    abstained: bool | None = None  # its confidence is below the threshold asked for; None where none was


class FaceResults(list[FaceResult]):
    """Every face found, image by image; ``no_face`` names the images where none was found."""

    def __init__(self, faces: Sequence[FaceResult], class_names: Sequence[str], no_face: Sequence[str] = ()):
        super().__init__(faces)
        self.class_names = list(class_names)
        self.no_face = list(no_face)

    @classmethod
    def from_predictions(cls, sources: Sequence[str], per_image: Sequence[Sequence[dict[str, Any]]],
                         class_names: Sequence[str]) -> FaceResults:
        """From :meth:`Predictor.predict_images`' per-image face dicts."""
        faces = [
            FaceResult(source, i, f["expression"], f["confidence"], dict(f["probabilities"]), f["valence"],
                       f["arousal"], None if f["box"] is None else tuple(f["box"]),
                       {k: f[k] for k in UNCERTAINTY_COLUMNS} if UNCERTAINTY_COLUMNS[0] in f else None,
                       f.get("abstained"))
            for source, found in zip(sources, per_image) for i, f in enumerate(found)
        ]
        return cls(faces, class_names, [s for s, found in zip(sources, per_image) if not found])

    def to_frame(self) -> pd.DataFrame:
        """One row per face: source, face, x1..y2, p_<class> for each class, expression, confidence, valence,
        arousal (and ``abstained`` where a threshold was asked for, the uncertainty columns under Monte-Carlo
        dropout)."""
        import pandas as pd

        abstention = any(f.abstained is not None for f in self)
        columns = ["source", "face", "x1", "y1", "x2", "y2", *(f"p_{c}" for c in self.class_names), "expression",
                   "confidence", *(["abstained"] if abstention else []), "valence", "arousal"]
        if any(f.uncertainty for f in self):
            columns += list(UNCERTAINTY_COLUMNS)
        rows = [{"source": f.source, "face": f.face, **dict(zip(("x1", "y1", "x2", "y2"), f.box or (None,) * 4)),
                 **{f"p_{c}": p for c, p in f.probabilities.items()}, "expression": f.expression,
                 "confidence": f.confidence, "abstained": f.abstained, "valence": f.valence, "arousal": f.arousal,
                 **(f.uncertainty or {})}
                for f in self]
        return pd.DataFrame(rows, columns=columns)
