"""Multimodal fusion: a face model's verdict, speech and physiological signals, combined to read expression, valence
and arousal better than any one of them (the seed's "multi-modal fusion")."""

from affectkit.lazy import lazy_exports

# Imported on first use: a module of the package (the face reading a server uses) loads without the fusion's
# PyTorch and scikit-learn.
_EXPORTS = {
    "ExplainedSamples": "affectkit.multimodal.explain",
    "explain_fusion": "affectkit.multimodal.explain",
    "MODALITIES": "affectkit.multimodal.manifest",
    "MultimodalManifest": "affectkit.multimodal.manifest",
    "read_manifest": "affectkit.multimodal.manifest",
    "FusionRun": "affectkit.multimodal.run",
    "load_fusion": "affectkit.multimodal.run",
    "predict_fusion": "affectkit.multimodal.run",
    "run_fusion": "affectkit.multimodal.run",
    "window_manifest": "affectkit.multimodal.windows",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
