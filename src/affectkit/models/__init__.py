"""Model factory, pretrained-weight loading and the two-file saved-model format."""

from affectkit.config import IMAGENET_MEAN, IMAGENET_STD
from affectkit.models.factory import MODEL_SPECS, AffectModel, build_model, count_parameters, resolve_spec
from affectkit.models.io import load_model, save_model

__all__ = [
    "MODEL_SPECS",
    "AffectModel",
    "build_model",
    "count_parameters",
    "resolve_spec",
    "load_model",
    "save_model",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
