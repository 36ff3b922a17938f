"""Multimodal fusion: a face model's verdict, speech and physiological signals, combined to read expression, valence
and arousal better than any one of them (the seed's "multi-modal fusion")."""

from affectkit.multimodal.manifest import MODALITIES, MultimodalManifest, read_manifest
from affectkit.multimodal.run import FusionRun, load_fusion, predict_fusion, run_fusion
from affectkit.multimodal.windows import window_manifest

__all__ = ["MODALITIES", "MultimodalManifest", "read_manifest", "FusionRun", "load_fusion", "predict_fusion",
           "run_fusion", "window_manifest"]
