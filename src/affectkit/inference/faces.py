"""Offline face detection (MTCNN, else OpenCV's Haar cascade) and eye-levelled square face crops."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from affectkit.errors import AffectkitError

log = logging.getLogger(__name__)

DetectorMethod = Literal["auto", "mtcnn", "haar"]
LEFT_EYE, RIGHT_EYE = 0, 1  # MTCNN landmark order: eyes, nose, mouth corners, as seen in the image
# Of the face box, on each side, around a detected face: what a model is served where its training faces' framing
# was not measured (a model saved before it was, or faces the detector finds too few of).
DEFAULT_MARGIN = 0.2
FRAMING_SIDE = 160  # training faces are enlarged to this side to be found: a 48 px face is below MTCNN's reach
MIN_FRAMED = 8  # training faces a framing is measured on, at least


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in image pixels, x2/y2 exclusive
    score: float
    landmarks5: np.ndarray | None = None  # (5, 2) float32 image pixels, or None when the detector has none


def _import_mtcnn_class() -> type:
    # facenet-pytorch is installed with --no-deps (its metadata pins torch<2.3); requests, which its package
    # __init__ imports, is one of ours.
    from facenet_pytorch import MTCNN

    return MTCNN


def check_detector_method(method: str) -> None:
    """Refuse a face detector by a name there is none of."""
    if method not in ("auto", "mtcnn", "haar"):
        raise AffectkitError(f"Unknown face detector {method!r}: choose auto (MTCNN where facenet-pytorch loads, else "
                             "OpenCV's Haar cascade), mtcnn or haar.")


def _resolve_method(method: DetectorMethod) -> tuple[str, Any]:
    check_detector_method(method)
    if method == "haar":
        return "haar", None
    try:
        return "mtcnn", _import_mtcnn_class()
    except ImportError as exc:
        if method == "mtcnn":
            raise AffectkitError(f"MTCNN needs facenet-pytorch, which fails to import ({exc}).") from None
        log.warning("facenet-pytorch is not importable (%s); using OpenCV's Haar cascade to find faces.", exc)
        return "haar", None


def _haar_cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise AffectkitError(f"OpenCV's face cascade {path} could not be loaded.")
    return cascade


def _clip_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    x1, y1 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
    x2, y2 = min(width, int(math.ceil(box[2]))), min(height, int(math.ceil(box[3])))
    return (x1, y1, x2, y2) if x2 - x1 >= 2 and y2 - y1 >= 2 else None


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Detection cost grows with pixels while faces in big photos stay large enough to find when shrunk."""
    scale = max_side / max(image.shape[:2])
    if scale >= 1:
        return image, 1.0
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


class FaceDetector:
    """``detect(image_rgb)`` -> faces sorted left to right; an image without faces gives an empty list."""

    def __init__(
        self,
        method: DetectorMethod = "auto",
        device: str = "cpu",
        min_score: float = 0.9,
        max_side: int = 1280,
        min_face_size: int = 40,
    ):
        self.method, mtcnn_class = _resolve_method(method)
        self.min_score = min_score
        self.max_side = max_side
        # Smaller faces carry too little detail to read an expression; skipping the finest levels of MTCNN's image
        # pyramid (its default is 20 px) halves detection time.
        self.min_face_size = min_face_size
        if self.method == "mtcnn":
            self._mtcnn = mtcnn_class(keep_all=True, device=device, min_face_size=min_face_size)
        else:
            self._cascade = _haar_cascade()

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        small, scale = _downscale(image_rgb, self.max_side)
        if min(small.shape[:2]) < self.min_face_size:  # no face of the minimum size fits (and MTCNN would fail)
            return []
        raw = self._detect_mtcnn(small) if self.method == "mtcnn" else self._detect_haar(small)
        height, width = image_rgb.shape[:2]
        faces = []
        for box, score, landmarks in raw:
            if score < self.min_score:
                continue
            clipped = _clip_box(box / scale, width, height)
            if clipped is not None:
                points = None if landmarks is None else (landmarks / scale).astype(np.float32)
                faces.append(Face(clipped, float(score), points))
        return sorted(faces, key=lambda f: (f.box[0], f.box[1]))

    def _detect_mtcnn(self, image: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray | None]]:
        boxes, probs, landmarks = self._mtcnn.detect(image, landmarks=True)
        if boxes is None:  # no face: (None, array([None], dtype=object), None)
            return []
        # Object-dtype arrays come back; convert each face's values to plain floats.
        return [(np.asarray(b, dtype=np.float64), float(p), np.asarray(l, dtype=np.float64))
                for b, p, l in zip(boxes, probs, landmarks)]

    def _detect_haar(self, image: np.ndarray) -> list[tuple[np.ndarray, float, None]]:
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        size = (self.min_face_size, self.min_face_size)
        found = self._cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=size)
        # The cascade accepts or rejects; it has no probability to report, so every accepted face scores 1.
        return [(np.array([x, y, x + w, y + h], dtype=np.float64), 1.0, None) for x, y, w, h in found]


def eye_angle(landmarks5: np.ndarray) -> float:
    """Degrees to rotate (counter-clockwise on screen) so that the eyes lie on a horizontal line."""
    dx, dy = landmarks5[RIGHT_EYE] - landmarks5[LEFT_EYE]
    return math.degrees(math.atan2(dy, dx))


def training_margin(faces: list[np.ndarray], detector: FaceDetector) -> tuple[float | None, int]:
    """The margin around the detector's box (of its side, on each side, as :func:`crop_face` takes it) at which
    square training ``faces`` frame their face: the median over the faces where the detector finds one face, None
    where it finds fewer than ``MIN_FRAMED``; and how many it was measured on. A model served at the framing it was
    trained at sees faces at the scale it learnt them (a FER2013 face fills its frame; an AffectNet crop adds a tenth
    of its box on each side; a CK+ frame shows the whole head)."""
    ratios = []
    for face in faces:
        found = detector.detect(cv2.resize(face, (FRAMING_SIDE, FRAMING_SIDE), interpolation=cv2.INTER_LINEAR))
        if len(found) == 1:
            x1, y1, x2, y2 = found[0].box
            ratios.append(FRAMING_SIDE / max(x2 - x1, y2 - y1))
    if len(ratios) < MIN_FRAMED:
        return None, len(ratios)
    return float(np.clip((np.median(ratios) - 1) / 2, 0.0, 1.0)), len(ratios)


def crop_transform(face: Face, margin: float = DEFAULT_MARGIN, align: bool = True) -> tuple[np.ndarray, int]:
    """The affine map (2 x 3) from image pixels to the pixels of the square patch :func:`crop_face` cuts around
    ``face``, and the patch's side before it is resized: the box widened by ``margin`` of its side on every side,
    rotated about the eye midpoint so the eyes are level where the face has eye landmarks and ``align``."""
    x1, y1, x2, y2 = face.box
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2, 1.0])
    side = max(1, round(max(x2 - x1, y2 - y1) * (1 + 2 * margin)))
    if align and face.landmarks5 is not None:
        eyes_mid = (face.landmarks5[LEFT_EYE] + face.landmarks5[RIGHT_EYE]) / 2
        matrix = cv2.getRotationMatrix2D((float(eyes_mid[0]), float(eyes_mid[1])), eye_angle(face.landmarks5), 1.0)
    else:
        matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # Move the (rotated) box centre to the middle of the patch; whole pixels keep the unrotated case an exact copy.
    matrix[:, 2] += np.round(side / 2 - matrix @ centre)
    return matrix, side


def crop_face(
    image_rgb: np.ndarray, face: Face, margin: float = DEFAULT_MARGIN, align: bool = True, size: int = 224
) -> np.ndarray:
    """A ``size x size`` square around the face box, widened by ``margin`` of the box on every side.

    With eye landmarks the image is first rotated about the eye midpoint so the eyes are level, as in the aligned
    training crops. Cropping happens at full resolution and the result is shrunk with INTER_AREA, the training resize.
    """
    matrix, side = crop_transform(face, margin, align)
    patch = cv2.warpAffine(image_rgb, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
