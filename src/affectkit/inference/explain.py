"""Where a model looks: Grad-CAM maps (Selvaraju et al., 2017), computed by Captum's ``LayerGradCam``, of the
expression class or the valence or arousal a model predicts for a face.

A map is the feature map a backbone pools, each channel weighted by the mean gradient of the target on it, summed
over channels, kept where positive and scaled up to the face crop: the parts of the face that raise the target. A
fusion model's map is the sum of its branches' maps (its fused output is a weighted sum of theirs, so each branch's
gradient already carries its weight). A model served with flip test-time augmentation is explained the same way:
the mean of the face's map and of its mirror image's map, mirrored back.

The final feature map can be coarse (an ImageNet backbone's is 1/32 of the crop: 3 x 3 at 96 px, which says little
more than which third of the face); the stage before it has twice the resolution, and its maps are a little less
specific to the target. ``layer``: "final", "finer" (the stage before), or "auto": the final map where it is
``MIN_MAP_SIDE`` cells across or more, else the finer one.

Occlusion (Zeiler & Fergus, 2014; Captum's ``Occlusion``) asks the served model itself instead: a grey patch (the
mean colour the model's inputs are normalised by) about a sixth of the face across is slid over the crop, and each
pixel's value is how far covering it lowers the target, averaged over the patches that cover it, kept where
positive, smoothed over about a stride. It needs no gradient and no feature map, so it explains any model the
predictor runs: a transformer, an ONNX export, a fusion with flip test-time augmentation exactly as served (each
occluded face and its mirror image); its maps are finer than a 3 x 3 final map, and it costs a forward pass per
patch place (``occlusion_window``).

Integrated gradients (Sundararajan et al., 2017; Captum's ``IntegratedGradients``) asks the network's gradients
with respect to the pixels themselves, averaged along straight paths to the face from two starts: the same grey
face, and the face heavily blurred (a start that keeps its colours, so its fine detail is what is weighed). Each
pixel's share of the rise of the target's logit (or valence, arousal) along a path sums to that rise; the map
averages the two paths' shares. It
needs the PyTorch network but no feature map (transformers too), gives a value per pixel, unsmoothed (pixel-fine and
speckled where occlusion's are blobs), and costs a forward and a backward pass per path point (``IG_STEPS``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from affectkit.config import CLASS_NAMES, MAP_METHODS
from affectkit.errors import AffectkitError
from affectkit.inference.backends import Outputs
from affectkit.inference.faces import Face, crop_transform
from affectkit.inference.predictor import Predictor, preprocess, served_outputs, softmax
from affectkit.models.custom_cnn import CustomCNN
from affectkit.models.factory import AffectModel, FusionBackbone
from affectkit.models.mini_xception import MiniXception

VALENCE_AROUSAL = ("valence", "arousal")  # targets besides a class: the model's continuous outputs
LAYERS = ("auto", "final", "finer")
MIN_MAP_SIDE = 7  # "auto" maps a finer stage where the final map is narrower (a 224-px ImageNet crop's is 7)


def explained_layers(backbone: nn.Module, finer: bool = False) -> list[tuple[nn.Module, bool]]:
    """The layers whose feature maps Grad-CAM weighs, one per network of ``backbone``, each with whether the map is
    the layer's input (a timm model's pooling) rather than its output. ``finer``: the stage before the last."""
    if isinstance(backbone, FusionBackbone):
        return [layer for branch in backbone.branches for layer in explained_layers(branch, finer)]
    if isinstance(backbone, CustomCNN):
        if finer and len(backbone.features) < 3:
            raise AffectkitError("A custom CNN of fewer than three stages has no finer map than its last: explain "
                                 "its final map (--layer final).")
        # Its last stage keeps the resolution of the one before: twice its map's is the third stage from the end.
        return [(backbone.features[-3] if finer else backbone.features, False)]
    if isinstance(backbone, MiniXception):
        return [(backbone.blocks[-2] if finer else backbone.blocks, False)]
    pool = getattr(backbone, "global_pool", None)
    if not isinstance(pool, nn.Module):
        pool = getattr(getattr(backbone, "head", None), "global_pool", None)
    if not isinstance(pool, nn.Module):
        raise AffectkitError(f"{type(backbone).__name__} pools no convolutional feature map that Grad-CAM could weigh "
                             "(a transformer pools tokens): explain it with --method occlusion.")
    if not finer:
        return [(pool, True)]
    stages = getattr(backbone, "feature_info", None) or []
    if len(stages) < 2:
        raise AffectkitError(f"{type(backbone).__name__} has no stage before its last to map: explain its final "
                             "map (--layer final).")
    return [(backbone.get_submodule(stages[-2]["module"]), False)]


def final_map_side(model: AffectModel, size: int) -> int:
    """The side, in cells, of the narrowest final feature map of the model's networks (in eval mode) for ``size``-pixel
    faces."""
    sides: list[int] = []

    def hook(of_input: bool):
        return lambda module, inputs, output: sides.append((inputs[0] if of_input else output).shape[-1])

    handles = [layer.register_forward_hook(hook(of_input)) for layer, of_input in explained_layers(model.backbone)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return min(sides)


def check_layer(layer: str, method: str = "gradcam") -> None:
    """Refuse an unknown ``method`` or ``layer``, and a layer asked of a method that weighs no feature map."""
    if method not in MAP_METHODS:
        raise AffectkitError(f"Unknown explanation method {method!r}: choose {', '.join(MAP_METHODS)}.")
    if layer not in LAYERS:
        raise AffectkitError(f"Unknown layer {layer!r} to explain: choose {', '.join(LAYERS)}.")
    if method != "gradcam" and layer != "auto":
        raise AffectkitError(f"--layer {layer} chooses the feature map Grad-CAM weighs; {MAP_METHODS[method]} "
                             "reads the face's pixels: leave --layer out, or explain with --method gradcam.")


def needs_network(method: str) -> bool:
    """Whether ``method`` differentiates the PyTorch network (Grad-CAM, integrated gradients) rather than asking the
    model as served (occlusion: ONNX exports too)."""
    return method != "occlusion"


def resolved_layer(model: AffectModel, size: int, layer: str) -> str:
    """"final" or "finer": ``layer`` as asked, or, for "auto", which one the model's maps of ``size``-pixel faces
    take (see the module's description). Resolved once, a loop over batches runs no probe pass per batch."""
    check_layer(layer)
    if layer != "auto":
        return layer
    if final_map_side(model, size) >= MIN_MAP_SIDE:
        return "final"
    try:
        explained_layers(model.backbone, finer=True)
    except AffectkitError:  # no finer stage to take: the final map it is
        return "final"
    return "finer"


def _output_forward(model: AffectModel, output: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model as Captum attributes it: images to ``output`` (0: the expression logits; 1 valence; 2 arousal, as
    a column)."""
    def forward(images: torch.Tensor) -> torch.Tensor:
        result = model(images)[output]
        return result if output == 0 else result[:, None]

    return forward


def _maps(model: AffectModel, batch: torch.Tensor, output: int, classes: torch.Tensor | None,
          finer: bool) -> torch.Tensor:
    """Grad-CAM maps (N, S, S) of ``output`` (0: the expression logit of each face's ``classes``; 1 valence;
    2 arousal), not yet scaled."""
    from captum.attr import LayerAttribution, LayerGradCam

    forward = _output_forward(model, output)
    target = classes.tolist() if output == 0 else 0
    size = tuple(batch.shape[-2:])
    total = torch.zeros(len(batch), *size)
    for layer, of_input in explained_layers(model.backbone, finer):
        cam = LayerGradCam(forward, layer).attribute(batch, target=target, attribute_to_layer_input=of_input,
                                                     relu_attributions=True)
        total += LayerAttribution.interpolate(cam.detach().float(), size, "bilinear")[:, 0].cpu()
    return total


def grad_cam(model: AffectModel, batch: np.ndarray, target: str | Sequence[int], tta_flip: bool = False,
             layer: str = "auto") -> np.ndarray:
    """Grad-CAM maps (N, S, S) in [0, 1] (each scaled by its maximum; all 0 where nothing raises the target) of a
    preprocessed ``batch`` (N, 3, S, S). ``target``: "valence", "arousal", or one expression class index per face.
    ``tta_flip``: as the model is served, the mean of each face's map and its mirror image's, mirrored back.
    ``layer``: which feature map (see the module's description)."""
    output, classes = _output_of(target, len(batch))
    with _differentiable(model):
        images = torch.from_numpy(np.ascontiguousarray(batch)).to(next(model.parameters()).device)
        finer = resolved_layer(model, images.shape[-1], layer) == "finer"
        maps = _maps(model, images, output, classes, finer)
        if tta_flip:
            maps = (maps + _maps(model, images.flip(-1), output, classes, finer).flip(-1)) / 2
    return _scaled(maps)


@contextmanager
def _differentiable(model: AffectModel) -> Iterator[None]:
    """``model`` in eval mode with autograd on, whatever the caller's no_grad or inference_mode (which would leave
    no gradient to weigh by); its mode restored after."""
    if any(t.is_inference() for t in (*model.parameters(), *model.buffers())):
        raise AffectkitError("The model's weights were made under torch.inference_mode (converted or predicted with "
                             "there), and autograd cannot go through them: explain a model loaded afresh.")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        model.train(was_training)


IG_STEPS = 16  # points of the two paths together: twice as many ranked pixels no better (explain_faithfulness.md)
IG_IMAGES = 128  # images of the path a forward and backward pass takes at once
IG_BLUR = 0.1  # the blurred start's Gaussian sigma, a share of the crop's side
# The faces integrated gradients' paths start from and occlusion's patches are cut from: grey (the mean colour the
# inputs are normalised by) and the face blurred.
REFERENCE_FACES = ("grey", "blur")


def blurred(batch: np.ndarray) -> np.ndarray:
    """Each face of a preprocessed ``batch`` (N, C, S, S) heavily blurred (a Gaussian of sigma ``IG_BLUR`` of its
    side): its colours kept, its detail gone."""
    sigma = batch.shape[-1] * IG_BLUR
    return np.stack([[cv2.GaussianBlur(channel, (0, 0), sigma) for channel in face] for face in batch])


def reference_faces(faces: np.ndarray, names: Sequence[str], refused: str,
                    device: torch.device | str = "cpu") -> list[float | torch.Tensor]:
    """Captum's baselines for the ``names`` of :data:`REFERENCE_FACES` of a preprocessed float32 batch ``faces``:
    0.0 for grey (0 after normalisation), the batch :func:`blurred` (on ``device``) for blur. Any other name is
    refused by a sentence that ``refused`` opens ("Occlusion covers with")."""
    unknown = sorted(set(names) - set(REFERENCE_FACES))
    if unknown or not names:
        raise AffectkitError(f"{refused} {' and/or '.join(REFERENCE_FACES)}, not {', '.join(unknown) or 'nothing'}.")
    return [0.0 if name == "grey" else torch.from_numpy(blurred(faces)).to(device) for name in names]


def integrated_gradients(model: AffectModel, batch: np.ndarray, target: str | Sequence[int],
                         tta_flip: bool = False, steps: int = IG_STEPS, starts: Sequence[str] = REFERENCE_FACES
                         ) -> np.ndarray:
    """Integrated-gradients maps (N, S, S) in [0, 1] (each scaled by its maximum; all 0 where no pixel raises the
    target) of a preprocessed ``batch`` (N, 3, S, S): each pixel's share, summed over its channels and kept where
    positive, of the target's rise (its expression logit, or valence, arousal) to the face along straight paths
    from each of ``starts``, an equal part of the ``steps`` points each, the shares averaged: "grey", the face
    occlusion covers with (0 after normalisation), and "blur", the face :func:`blurred`. ``target`` and
    ``tta_flip`` as for :func:`grad_cam`."""
    from captum.attr import IntegratedGradients

    output, classes = _output_of(target, len(batch))
    aim = classes.tolist() if classes is not None else 0
    with _differentiable(model):
        device = next(model.parameters()).device
        method = IntegratedGradients(_output_forward(model, output))

        def attributed(faces: np.ndarray) -> torch.Tensor:
            # Grey asks what the face's colours and shapes add; the blurred face, what its fine detail adds (an eye's
            # corner, a lip's edge). Each alone ranks pixels best where a deletion resembles it; the two together
            # rank them as well as the better one where no deletion is favoured (explain_faithfulness.md).
            faces = np.ascontiguousarray(faces, dtype=np.float32)
            images = torch.from_numpy(faces).to(device)
            shares = [method.attribute(images, baselines=start, target=aim, n_steps=max(1, steps // len(starts)),
                                       internal_batch_size=max(len(faces), IG_IMAGES)).detach().float().cpu()
                      for start in reference_faces(faces, starts, "Integrated gradients start from", device)]
            return sum(shares) / len(shares)

        attributions = attributed(batch)
        if tta_flip:
            attributions = (attributions + attributed(batch[..., ::-1]).flip(-1)) / 2
    return _scaled(attributions.sum(1).clamp_min(0))


def _output_of(target: str | Sequence[int], faces: int) -> tuple[int, torch.Tensor | None]:
    """The model output a map is of (0: expression, 1 valence, 2 arousal) and, for 0, the class of each face."""
    if isinstance(target, str):
        if target not in VALENCE_AROUSAL:
            raise AffectkitError(f"Unknown explanation target {target!r}: valence, arousal or class indices.")
        return 1 + VALENCE_AROUSAL.index(target), None
    classes = torch.as_tensor(np.asarray(target, dtype=np.int64))
    if classes.shape != (faces,):
        raise AffectkitError(f"Give one class per face: {faces} faces, {tuple(classes.shape)} classes.")
    return 0, classes


def _scaled(maps: torch.Tensor) -> np.ndarray:
    """Each map divided by its maximum (an all-0 map stays 0)."""
    peak = maps.flatten(1).amax(1).clamp_min(torch.finfo(maps.dtype).tiny)[:, None, None]
    return (maps / peak).numpy()


def occlusion_window(size: int) -> tuple[int, int]:
    """The side and the stride, in pixels, of the patch occlusion slides over a ``size``-pixel crop: about a sixth of
    the face (an eye, the mouth) moved by about half its side, in steps that reach the crop's far edges, so every
    pixel is covered (11 x 11 places for most sizes)."""
    stride = max(1, round(size / 12))
    steps = max(1, round(size / stride) - 2)
    return size - stride * steps, stride


OCCLUSION_IMAGES = 128  # occluded faces a forward pass takes at once


# Grey alone by default: a patch of the face blurred (integrated gradients' blurred start) ranked pixels worse under
# a deletion neither favours, alone or beside grey (explain_faithfulness.md).
def occlusion(backend: Callable[[np.ndarray], Outputs], batch: np.ndarray, target: str | Sequence[int],
              tta_flip: bool = False, temperature: float = 1.0, fills: Sequence[str] = ("grey",)) -> np.ndarray:
    """Occlusion maps (N, S, S) in [0, 1] (each scaled by its maximum; all 0 where covering no part of the face
    lowers the target) of a preprocessed ``batch`` (N, 3, S, S), as ``backend`` (a predictor's: PyTorch or ONNX)
    answers it: the drop of the target's probability (at ``temperature``), or of valence or arousal, when a patch
    covers each place, the drops of each of ``fills`` (:data:`REFERENCE_FACES`: the place grey, or as in the face
    :func:`blurred`) averaged. ``target`` as for :func:`grad_cam`; ``tta_flip``: each occluded face is
    answered with its mirror image, as the model is served."""
    from captum.attr import Occlusion

    faces = np.ascontiguousarray(batch, dtype=np.float32)
    patches = reference_faces(faces, fills, "Occlusion covers with")
    output, classes = _output_of(target, len(batch))

    def forward(images: torch.Tensor) -> torch.Tensor:
        outputs = served_outputs(backend, images.numpy(), tta_flip)
        score = softmax(outputs[0], temperature) if output == 0 else outputs[output][:, None]
        return torch.from_numpy(np.asarray(score, dtype=np.float32))

    window, stride = occlusion_window(batch.shape[-1])
    channels = batch.shape[1]
    with torch.no_grad():
        drops = sum(Occlusion(forward).attribute(
            torch.from_numpy(faces), sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride), baselines=patch,
            target=classes.tolist() if classes is not None else 0,
            perturbations_per_eval=max(1, OCCLUSION_IMAGES // len(batch))) for patch in patches) / len(patches)
    # A patch covers every channel, so each channel carries the same drop. Each pixel averages the patches over it,
    # which draws the patches' edges as lines across the map: smoothed over about a stride, they go.
    smooth = [cv2.GaussianBlur(drop, (0, 0), stride / 2) for drop in drops[:, 0].clamp_min(0).numpy()]
    return _scaled(torch.from_numpy(np.stack(smooth)))


def class_index(name: str, trained: Sequence[str]) -> int:
    """The index of the expression ``name`` (any case) among the classes a model was ``trained`` on."""
    matches = [c for c in trained if c.lower() == name.lower()]
    if not matches:
        raise AffectkitError(f"target {name!r} is not an expression the model was trained on: choose predicted, "
                             f"{', '.join(trained)}, or valence / arousal.")
    return CLASS_NAMES.index(matches[0])


def check_target(target: str, class_names: Sequence[str], trained: Sequence[str],
                 predicts_valence_arousal: bool) -> None:
    """Refuse a target the model cannot be explained for: a class (or the predicted one) of a valence/arousal model
    (no ``class_names``), valence or arousal of an expression model, a class it was not ``trained`` on."""
    if target in VALENCE_AROUSAL:
        if not predicts_valence_arousal:
            raise AffectkitError(f"target {target}: the model predicts no {target} (no face it was trained on had "
                                 "one); explain its expression: target predicted.")
        return
    if not class_names:
        raise AffectkitError(f"target {target}: the model predicts valence and arousal only; explain one of them: "
                             "target valence or target arousal.")
    if target != "predicted":
        class_index(target, trained)


@dataclass(frozen=True)
class FaceExplanation:
    """One face of an image, answered and mapped (:func:`explain_image`)."""

    result: dict[str, Any]  # the predictor's answer, as predict gives it (its box set where a detector found it)
    crop: np.ndarray  # uint8 RGB at the model's input size
    heatmap: np.ndarray  # the crop's Grad-CAM map, values in [0, 1]
    target: str  # what the map shows the evidence for (target_name)
    upper_half_share: float  # NaN for an empty map
    peak: np.ndarray  # (x, y) as shares of the crop's side; NaN for an empty map
    face: Face | None  # where the detector found it; None where the whole image was read as the face


def explain_image(predictor: Predictor, model: AffectModel | None, image: np.ndarray, target: str,
                  layer: str = "auto", detect: bool = True, method: str = "gradcam") -> list[FaceExplanation]:
    """Every face of ``image`` as the predictor finds and answers it, with its map of ``target`` (see
    :func:`explain_crops`); without ``detect``, or where the predictor has no detector, the whole image is the one
    face."""
    faces, crops = predictor.find_faces(image) if detect else ([], [image])
    if not crops:
        return []
    crops = [cv2.resize(c, (predictor.input_size,) * 2, interpolation=cv2.INTER_AREA) for c in crops]
    results, maps = explain_crops(predictor, model, crops, target, layer, method)
    explained = []
    for i, (result, crop, heatmap, share, peak) in enumerate(
            zip(results, crops, maps, upper_half_share(maps), map_peaks(maps))):
        result["box"] = [int(v) for v in faces[i].box] if faces else None
        explained.append(FaceExplanation(result, crop, heatmap, target_name(target, result), float(share), peak,
                                         faces[i] if faces else None))
    return explained


def explain_crops(predictor: Predictor, model: AffectModel | None, crops: Sequence[np.ndarray], target: str,
                  layer: str = "auto", method: str = "gradcam") -> tuple[list[dict[str, Any]], np.ndarray]:
    """The predictor's results for face ``crops`` (uint8 RGB at its input size) and their maps (N, S, S) of
    ``target``: "predicted" (the class each face is answered), an expression by name, "valence" or "arousal".
    ``method``: "gradcam" or "ig" (integrated gradients), on ``model`` (the predictor's network in PyTorch), or
    "occlusion", on the predictor's own backend (``model`` unused)."""
    results = predictor.predict_batch(crops)
    batch = preprocess(crops, predictor.input_size, predictor.mean, predictor.std)
    aim = target if target in VALENCE_AROUSAL else (
        [r["expression_id"] for r in results] if target == "predicted"
        else [class_index(target, predictor.trained_classes)] * len(crops))
    return results, face_maps(method, batch, aim, model, predictor.backend, predictor.tta_flip, predictor.temperature,
                              layer)


def face_maps(method: str, batch: np.ndarray, target: str | Sequence[int], model: AffectModel | None,
              backend: Callable[[np.ndarray], Outputs] | None, tta_flip: bool = False, temperature: float = 1.0,
              layer: str = "auto") -> np.ndarray:
    """The maps (N, S, S) of a preprocessed ``batch`` by ``method``: :func:`grad_cam` (``layer``) or
    :func:`integrated_gradients` on ``model`` (the network in PyTorch), or :func:`occlusion` on ``backend`` (the
    model as served, at ``temperature``). ``target`` and ``tta_flip`` as for :func:`grad_cam`."""
    if not needs_network(method):
        return occlusion(backend, batch, target, tta_flip, temperature)
    if model is None:
        raise AffectkitError(f"{MAP_METHODS[method]} needs the PyTorch model: load it, or explain with --method "
                             "occlusion.")
    if method == "ig":
        return integrated_gradients(model, batch, target, tta_flip=tta_flip)
    return grad_cam(model, batch, target, tta_flip=tta_flip, layer=layer)


def target_name(target: str, result: dict[str, Any]) -> str:
    """What a face's map (of :func:`explain_crops`) shows the evidence for: the class it was answered
    ("predicted"), the class named, spelt as affectkit spells it, or "valence" / "arousal"."""
    if target in VALENCE_AROUSAL:
        return target
    if target == "predicted":
        return result["expression"]
    return next(name for name in CLASS_NAMES if name.lower() == target.lower())


def upper_half_share(maps: np.ndarray) -> np.ndarray:
    """The share of each map's weight (N, S, S) in the crop's upper half, where an aligned face crop holds the
    brows and eyes (the lower half: nose, mouth and chin); NaN for an empty map."""
    half = maps.shape[1] // 2
    total = maps.sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, maps[:, :half].sum((1, 2)) / total, np.nan)


def map_peaks(maps: np.ndarray) -> np.ndarray:
    """Where each map (N, S, S) peaks, (N, 2): x from the crop's left and y from its top, as shares of its side (the
    centre of the peak cell); NaN for an empty map."""
    side = maps.shape[-1]
    rows, columns = np.unravel_index(maps.reshape(len(maps), -1).argmax(1), maps.shape[1:])
    peaks = (np.stack([columns, rows], 1) + 0.5) / side
    peaks[maps.max((1, 2)) <= 0] = np.nan
    return peaks


def overlay(crop: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """``crop`` (uint8 RGB) under ``heatmap`` (its size, values in [0, 1]) in the jet colours: red where the map is
    high; a map weighs its own opacity, so where it is 0 the face shows as it is."""
    colours = cv2.cvtColor(cv2.applyColorMap(np.uint8(np.clip(heatmap, 0, 1) * 255), cv2.COLORMAP_JET),
                           cv2.COLOR_BGR2RGB).astype(np.float32)
    weight = opacity * np.clip(heatmap, 0, 1)[..., None]
    return np.round(crop * (1 - weight) + colours * weight).astype(np.uint8)


def image_heatmap(shape: tuple[int, int], explained: Sequence[FaceExplanation], margin: float) -> np.ndarray:
    """The maps of an image's faces (:func:`explain_image`) laid back over the image (``shape``: height, width) where
    each face's crop was cut from it, at ``margin`` (the predictor's): one map of the image, the highest of the maps
    where crops overlap, 0 away from the faces. A face read from the whole image stretches its map over it."""
    height, width = shape
    combined = np.zeros((height, width), np.float32)
    for face in explained:
        heatmap = face.heatmap.astype(np.float32)
        if face.face is None:
            placed = cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)
        else:
            matrix, side = crop_transform(face.face, margin)
            # The crop's transform maps image pixels onto the crop: the inverse map lays the crop back.
            placed = cv2.warpAffine(cv2.resize(heatmap, (side, side), interpolation=cv2.INTER_LINEAR), matrix,
                                    (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        np.maximum(combined, placed, out=combined)
    return combined


def png_bytes(image: np.ndarray, name: str) -> bytes:
    """``image`` (uint8 RGB) encoded as PNG; ``name``: what to call it if it cannot be."""
    encoded, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not encoded:
        raise AffectkitError(f"Could not encode {name} as PNG.")
    return png.tobytes()


__all__ = ["IG_BLUR", "IG_STEPS", "LAYERS", "MIN_MAP_SIDE", "REFERENCE_FACES", "VALENCE_AROUSAL",
           "FaceExplanation", "blurred", "check_layer", "check_target", "class_index", "explain_crops", "explain_image",
           "explained_layers", "face_maps", "final_map_side", "grad_cam", "image_heatmap", "integrated_gradients",
           "map_peaks", "needs_network", "occlusion", "occlusion_window", "overlay", "png_bytes", "reference_faces",
           "resolved_layer", "target_name", "upper_half_share"]
