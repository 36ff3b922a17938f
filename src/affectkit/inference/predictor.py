"""Face images -> expression probabilities, valence and arousal, with optional Monte-Carlo dropout uncertainty."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

from affectkit.errors import AffectkitError
from affectkit.inference.abstention import Abstention, abstention_for, check_abstention_request
from affectkit.inference.backends import (
    MODEL_DESCRIPTION_KEY,
    QUANTIZATION_KEY,
    WEIGHTS_DIGEST_KEY,
    OnnxBackend,
    Outputs,
    weights_digest,
)
from affectkit.inference.faces import (
    DEFAULT_MARGIN,
    DetectorMethod,
    Face,
    FaceDetector,
    check_detector_method,
    crop_face,
)
from affectkit.inference.images import as_rgb_uint8
from affectkit.models.metadata import (
    FORMAT,
    is_export,
    model_paths,
    predicts_expression,
    predicts_valence_arousal,
    read_metadata,
    sha256_of,
    synthetic_data_warning,
    trained_classes,
)

if TYPE_CHECKING:
    import pandas as pd

    from affectkit.inference.live import LiveFrame
    from affectkit.inference.results import FaceResults, ImageInput
    from affectkit.inference.torch_backend import TorchBackend

log = logging.getLogger(__name__)

BackendName = Literal["auto", "onnx", "torch"]


def model_files(model_path: str | Path) -> tuple[Path, Path, Path]:
    """(weights, metadata, export) for ``x``, ``x.safetensors``, ``x.json``, or an export: ``x.onnx``,
    ``x.int8.onnx``, ``x.ort`` or ``x.int8.ort`` (the export is ``x.onnx`` for the others)."""
    path = Path(model_path)
    if is_export(path):
        stem = path.with_suffix("")
        stem = stem.with_suffix("") if stem.suffix == ".int8" else stem
        weights, meta = model_paths(stem)
        return weights, meta, path
    weights, meta = model_paths(path)
    return weights, meta, weights.with_suffix(".onnx")


def model_digest(model_path: str | Path) -> str:
    """The SHA-256 of the weights behind a model: of its ``.safetensors`` file, or, given its ONNX export alone, the
    digest the export records of the weights it came from (the file's own where it records none), so that the
    weights and their export are one model wherever a model is keyed or checked by digest."""
    weights, _, onnx_path = model_files(model_path)
    if weights.is_file():
        return weights_digest(weights)
    if not onnx_path.is_file():
        raise AffectkitError(f"{model_path}: no such model (neither {weights.name} nor {onnx_path.name} exists).")
    return OnnxBackend(onnx_path).metadata.get(WEIGHTS_DIGEST_KEY) or sha256_of(onnx_path)


def input_normalization(meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel mean and std [3] the inputs of the model ``meta`` describes are normalised by."""
    norm = meta["normalization"]
    return np.asarray(norm["mean"], dtype=np.float32), np.asarray(norm["std"], dtype=np.float32)


def preprocess(images: Sequence[np.ndarray], size: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The training transform: INTER_AREA resize to ``size``, [0, 1], mean/std normalisation, NCHW float32."""
    batch = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
    batch = (batch.astype(np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def served_outputs(run: Callable[[np.ndarray], Outputs], batch: np.ndarray, tta_flip: bool) -> Outputs:
    """``run``'s outputs (a backend's call, or its Monte-Carlo sampling) for a preprocessed ``batch`` as the model is
    served: with ``tta_flip``, each averaged with its mirror image's."""
    outputs = run(batch)
    if not tta_flip:
        return outputs
    mirrored = run(np.ascontiguousarray(batch[..., ::-1]))
    return tuple((a + b) / 2 for a, b in zip(outputs, mirrored))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def entropy(probabilities: np.ndarray) -> np.ndarray:
    return -(probabilities * np.log(np.clip(probabilities, 1e-12, None))).sum(axis=-1)


def expression_fields(class_names: Sequence[str], probabilities: np.ndarray,
                      abstention: Abstention | None = None) -> dict[str, Any]:
    """A face result's expression fields from its class probabilities: ``probabilities`` by class name, the most
    probable ``expression`` with its ``expression_id`` and ``confidence``, and, given an ``abstention``, whether
    the face is ``abstained`` on (its confidence is below the threshold). A valence/arousal model (no class names)
    gives an empty ``probabilities`` and None for the others."""
    if not class_names:
        return {"probabilities": {}, "expression": None, "expression_id": None, "confidence": None}
    best = int(np.argmax(probabilities))
    fields = {"probabilities": {name: float(p) for name, p in zip(class_names, probabilities)},
              "expression": class_names[best], "expression_id": best, "confidence": float(probabilities[best])}
    if abstention is not None:
        fields["abstained"] = abstention.abstains(fields["expression"], fields["confidence"])
    return fields


def model_metadata(model_path: str | Path, onnx: OnnxBackend | None = None) -> dict[str, Any]:
    """A model's description: its ``.json``, or, for an ONNX export without one beside it, the copy the export
    carries (so that the ``.onnx`` file alone can be deployed; ``onnx``: the export, where it is loaded already)."""
    _, meta_path, onnx_path = model_files(model_path)
    if not is_export(model_path) or meta_path.is_file():
        return read_metadata(meta_path)
    if not onnx_path.is_file():
        raise AffectkitError(f"{onnx_path} does not exist.")
    carried = (onnx or OnnxBackend(onnx_path)).metadata.get(MODEL_DESCRIPTION_KEY)
    if carried is None:
        raise AffectkitError(f"{onnx_path} has no {meta_path.name} beside it and carries no model description (it "
                             f"was exported before affectkit put one in): put {meta_path.name} beside it, or export "
                             "it again.")
    meta = json.loads(carried)
    if meta.get("format") != FORMAT:
        raise AffectkitError(f"{onnx_path} carries no affectkit model description it can read (format "
                             f"{meta.get('format')!r}).")
    return meta


def _onnx_backend_if_current(onnx_path: Path, weights: Path, threads: int | None) -> OnnxBackend | None:
    backend = OnnxBackend(onnx_path, threads)
    if backend.exported_from_other_weights(weights):
        log.warning("%s was exported from other weights than %s; using PyTorch. Re-run `affectkit export`.",
                    onnx_path, weights)
        return None
    return backend


def load_backend(
    model_path: str | Path, backend: BackendName, device: str, mc_samples: int, threads: int | None = None
) -> tuple[dict[str, Any], TorchBackend | OnnxBackend]:
    weights, meta_path, onnx_path = model_files(model_path)
    if backend not in ("auto", "onnx", "torch"):
        raise AffectkitError(f"Unknown backend {backend!r}; choose auto, onnx or torch.")
    explicit_onnx = is_export(model_path)
    if mc_samples > 0:
        if backend == "onnx" or explicit_onnx:
            raise AffectkitError("Monte-Carlo dropout (--mc-samples) needs the torch backend and the .safetensors "
                                 "model; the ONNX graph has dropout removed.")
        backend = "torch"
    if explicit_onnx and backend == "torch":
        raise AffectkitError(f"{model_path} is an export (ONNX Runtime runs it); pass the .safetensors model for "
                             "--backend torch.")
    if backend == "onnx" or explicit_onnx:
        if not onnx_path.is_file():
            raise AffectkitError(f"{onnx_path} does not exist; create it with `affectkit export {weights}`.")
        onnx = OnnxBackend(onnx_path, threads)
        return model_metadata(model_path, onnx), onnx
    if backend == "auto" and device == "cpu" and onnx_path.is_file():  # onnxruntime runs here on the CPU only
        onnx = _onnx_backend_if_current(onnx_path, weights, threads)
        if onnx is not None:
            return read_metadata(meta_path), onnx
    # Imported here: a model served from its ONNX export needs neither PyTorch nor timm.
    from affectkit.inference.torch_backend import TorchBackend
    from affectkit.models.io import load_model

    model, meta = load_model(weights, device=device)
    return meta, TorchBackend(model, device)


class Predictor:
    """Loads a saved model once; ``predict`` / ``predict_images`` find faces and classify each, ``predict_batch``
    takes crops. With ``min_confidence``, or ``target_accuracy`` (the threshold at which its validation faces were
    answered that accurately; with ``per_class_thresholds``, a threshold for the faces predicted as each class, read
    from the validation faces predicted as it), every face says whether it is ``abstained`` on: its confidence is
    below the threshold. ``threads``: the CPU threads of the model and the face detector (default: PyTorch's and
    onnxruntime's choice, a thread per core)."""

    def __init__(
        self,
        model_path: str | Path,
        backend: BackendName = "auto",
        device: str = "cpu",
        detect: bool = True,
        mc_samples: int = 0,
        batch_size: int = 32,
        detector: FaceDetector | None = None,
        detector_method: DetectorMethod = "auto",
        face_margin: float | None = None,
        min_confidence: float | None = None,
        target_accuracy: float | None = None,
        per_class_thresholds: bool = False,
        threads: int | None = None,
    ):
        if mc_samples < 0 or batch_size < 1:
            raise AffectkitError("--mc-samples must be >= 0 and --batch-size >= 1.")
        if threads is not None and threads < 1:
            raise AffectkitError("--threads must be at least 1.")
        if device != "cpu":  # PyTorch checks it: the face detector runs there too, whatever backend the model takes
            from affectkit.models.io import check_device

            check_device(device)
        if face_margin is not None and not 0 <= face_margin <= 1:
            raise AffectkitError(f"--face-margin must be in [0, 1] (of the face box, on each side), got {face_margin}.")
        check_abstention_request(min_confidence, target_accuracy, per_class_thresholds)
        if detect:
            check_detector_method(detector_method)
        self.model_path = Path(model_path)
        self.meta, self.backend = load_backend(model_path, backend, device, mc_samples, threads)
        # A valence/arousal model (trained on faces without a class) has no expression to give: no class names.
        self.class_names: list[str] = list(self.meta["class_names"]) if predicts_expression(self.meta) else []
        self.trained_classes: list[str] = trained_classes(self.meta) if self.class_names else []
        # An expression model (trained on faces without valence/arousal) gives none: its outputs were never trained.
        self.predicts_valence_arousal = predicts_valence_arousal(self.meta)
        self.input_size = int(self.meta["input_size"])
        self.mean, self.std = input_normalization(self.meta)
        self.temperature = float(self.meta.get("temperature") or 1.0)
        # A model evaluated with flip test-time augmentation is served the same way, so served outputs are the
        # ones its reported metrics describe.
        self.tta_flip = bool(self.meta.get("config", {}).get("tta_flip", False))
        # Detected faces are cropped as the training faces frame theirs, where that was measured (or as asked).
        measured = self.meta.get("face_margin")
        self.face_margin_source: Literal["asked", "measured", "default"] = (
            "asked" if face_margin is not None else "default" if measured is None else "measured")
        self.face_margin = {"asked": face_margin, "measured": measured, "default": DEFAULT_MARGIN}[
            self.face_margin_source]
        # Faces below this confidence are marked abstained, a threshold given or read from the validation faces.
        self.abstention = abstention_for(self.meta, model_path, min_confidence, target_accuracy, per_class_thresholds)
        self.mc_samples = mc_samples
        self.batch_size = batch_size
        self.detector = (detector or FaceDetector(detector_method, device=device)) if detect else None
        # PyTorch's thread budget is the process's: set where the model or the face detector runs on PyTorch (an
        # ONNX model on crops, or found by OpenCV's cascade, never loads it).
        if threads is not None and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def quantization(self) -> str | None:
        """What an int8 export was quantised as ("static int8: ..."); None for a float model."""
        return self.backend.metadata.get(QUANTIZATION_KEY) if isinstance(self.backend, OnnxBackend) else None

    @property
    def min_confidence(self) -> float | None:
        """The confidence below which a face is marked ``abstained`` (where its class has no threshold of its own:
        ``abstention.by_class``); None where the model answers every face."""
        return None if self.abstention is None else self.abstention.min_confidence

    def require_expression(self, purpose: str) -> None:
        """Refuse a valence/arousal model where ``purpose`` (a phrase: "a fusion reads") needs expressions."""
        if not self.class_names:
            raise AffectkitError(f"{self.model_path} predicts valence and arousal only (no face it was trained on had "
                                 f"an expression class), and {purpose} its expression probabilities: give a model "
                                 "trained with expression classes.")

    @property
    def warning(self) -> str | None:
        """A sentence to show wherever this model's predictions are (its training data were synthetic), or None."""
        return synthetic_data_warning(self.meta)

    def predict(self, inputs: ImageInput | Sequence[ImageInput], bgr: bool = False) -> FaceResults:
        """Every face in one image or many: file paths, folders (their images), an image file's bytes, RGB arrays
        (uint8, or floats in [0, 1]), PyTorch tensors (C x H x W) or PIL images, alone or in a list (see
        :func:`~affectkit.inference.results.gather_images`); ``.to_frame()`` of the result is a DataFrame with one row
        per face. ``bgr``: the arrays are in OpenCV's BGR order (``cv2.imread``, a ``VideoCapture`` frame), as
        deepface and fer take them."""
        # Imported here: results.py reads files through media.py, which imports this module.
        from affectkit.inference.results import FaceResults, gather_images

        found = gather_images(inputs, bgr=bgr)
        return FaceResults.from_predictions([source for source, _ in found],
                                            self.predict_images([image for _, image in found]), self.class_names)

    def predict_video(self, path: str | Path, every: int = 1, smooth: float | None = None) -> pd.DataFrame:
        """Every face of every ``every``-th frame of the video at ``path``, followed across frames (``track``) and,
        with ``smooth`` in (0, 1], smoothed over them: one row per face (a frame without one has a row whose
        ``status`` says so), the columns ``affectkit predict`` writes for a video."""
        from affectkit.inference.media import VIDEO_SUFFIXES, is_video, predict_media, results_frame

        path = Path(path)
        if not path.is_file():
            raise AffectkitError(f"{path} does not exist." if not path.exists() else f"{path} is not a file.")
        if not is_video(path):
            raise AffectkitError(f"{path} is not a video this reads ({', '.join(VIDEO_SUFFIXES)}); predict() reads "
                                 "images.")
        rows = predict_media(self, [path], every=every, smooth=smooth)
        if all(str(row["status"]).startswith("error: ") for row in rows):
            raise AffectkitError(f"{path}: {rows[0]['status'].removeprefix('error: ')}")
        return results_frame(rows, self.class_names)

    def stream(self, source: int | str | Path | Any = 0, smooth: float | None = None, every: int = 1,
               max_frames: int | None = None, seconds: float | None = None) -> Iterator[LiveFrame]:
        """Live: each frame of a camera (its index; 0 the first), a network camera (its rtsp:// or http:// URL), a
        video file played through, or an opened ``cv2.VideoCapture``, with its faces (``.faces``: as
        :meth:`predict_images` gives them, with ``track``), as soon as it is answered. A camera gives its newest
        frame each time, so the answers keep up with it; ``smooth`` in (0, 1] smooths each face over frames.
        Stops at the source's end, after ``max_frames`` frames or ``seconds``, or when the loop is left."""
        from affectkit.inference.live import live_faces

        return live_faces(self, source, smooth=smooth, every=every, max_frames=max_frames, seconds=seconds)

    def find_faces(self, image_rgb: np.ndarray) -> tuple[list[Face], list[np.ndarray]]:
        """Faces and their model-sized crops; without detection the whole image is the one face."""
        image_rgb = as_rgb_uint8(image_rgb)
        if self.detector is None:
            return [], [image_rgb]
        faces = self.detector.detect(image_rgb)
        return faces, [crop_face(image_rgb, f, margin=self.face_margin, size=self.input_size) for f in faces]

    def predict_images(self, images: Sequence[np.ndarray]) -> list[list[dict[str, Any]]]:
        """One list of face results per image; crops of all images share batches."""
        found = [self.find_faces(im) for im in images]
        results = self.predict_batch([crop for _, crops in found for crop in crops])
        out, start = [], 0
        for faces, crops in found:
            per_image = results[start : start + len(crops)]
            start += len(crops)
            for result, face in zip(per_image, faces):
                result["box"] = [int(v) for v in face.box]
            out.append(per_image)
        return out

    def predict_batch(self, crops: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Classify face crops (any size; resized like training); each result's ``box`` is None."""
        results: list[dict[str, Any]] = []
        for start in range(0, len(crops), self.batch_size):
            chunk = [as_rgb_uint8(c) for c in crops[start : start + self.batch_size]]
            results += self._run(preprocess(chunk, self.input_size, self.mean, self.std))
        return results

    def embed_batch(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """The face model's embedding [N, D] of face crops (its pooled backbone features; with the mirror image's
        averaged in where the model is served with flip test-time augmentation). Needs the torch backend."""
        if self.backend.name != "torch":
            raise AffectkitError("Face embeddings need the PyTorch model: load it with backend='torch' (--backend "
                                 "torch) and the .safetensors file.")
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = preprocess([as_rgb_uint8(c) for c in crops[start : start + self.batch_size]], self.input_size,
                               self.mean, self.std)
            features = self.backend.features(batch)
            if self.tta_flip:
                features = (features + self.backend.features(np.ascontiguousarray(batch[..., ::-1]))) / 2
            out.append(features)
        return np.concatenate(out)

    def _run(self, batch: np.ndarray) -> list[dict[str, Any]]:
        if self.mc_samples == 0:
            logits, valence, arousal = served_outputs(self.backend, batch, self.tta_flip)
            probs = softmax(logits, self.temperature)
            return [self._face(p, v, a) for p, v, a in zip(probs, valence, arousal)]
        # Each pass is the same predictor as without sampling: the face and its mirror image.
        logits, valence, arousal = served_outputs(lambda b: self.backend.sample(b, self.mc_samples), batch,
                                                  self.tta_flip)
        probs = softmax(logits, self.temperature).mean(axis=0)
        entropies = entropy(probs) if self.class_names else [None] * len(probs)
        spread = zip(entropies, valence.std(axis=0), arousal.std(axis=0))
        return [
            {**self._face(p, v, a), "entropy": None if h is None else float(h), **self._affect(vs, as_, "_std")}
            for p, v, a, (h, vs, as_) in zip(probs, valence.mean(axis=0), arousal.mean(axis=0), spread)
        ]

    def _affect(self, valence: float, arousal: float, suffix: str = "") -> dict[str, float | None]:
        """``valence`` and ``arousal`` (or their ``_std``), None where the model does not predict them."""
        if not self.predicts_valence_arousal:
            return {f"valence{suffix}": None, f"arousal{suffix}": None}
        return {f"valence{suffix}": float(valence), f"arousal{suffix}": float(arousal)}

    def _face(self, probs: np.ndarray, valence: float, arousal: float) -> dict[str, Any]:
        return {"box": None, **expression_fields(self.class_names, probs, self.abstention),
                **self._affect(valence, arousal)}
