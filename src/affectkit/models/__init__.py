"""Model factory, pretrained-weight loading and the two-file saved-model format. Its names are imported on first
use: a module of the package (the torch-free :mod:`affectkit.models.metadata`) loads without PyTorch and timm."""

from affectkit.lazy import lazy_exports

_EXPORTS = {
    "MODEL_SPECS": "affectkit.models.factory",
    "AffectModel": "affectkit.models.factory",
    "build_model": "affectkit.models.factory",
    "count_parameters": "affectkit.models.factory",
    "resolve_spec": "affectkit.models.factory",
    "load_model": "affectkit.models.io",
    "save_model": "affectkit.models.io",
    "IMAGENET_MEAN": "affectkit.config",
    "IMAGENET_STD": "affectkit.config",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
