"""Orchestration over the library's layers (data and models, then training and evaluation): the main pipeline and
the evaluation of a saved model (``run``), its calibration on other faces (``calibrate``), its scores on corrupted
faces (``robustness``), the demo, the benchmark and hyperparameter tuning. The public API (:mod:`affectkit.api`)
and the command line call these.

Names are imported on first use, so a submodule (``affectkit.pipeline.tuning``) does not pay for the others.
"""

from affectkit.lazy import lazy_exports

_EXPORTS = {
    "calibrate_saved": "affectkit.pipeline.calibrate",
    "compare_saved": "affectkit.pipeline.compare",
    "evaluate_saved": "affectkit.pipeline.run",
    "run_pipeline": "affectkit.pipeline.run",
    "train_one": "affectkit.pipeline.run",
    "run_demo": "affectkit.pipeline.demo",
    "robustness_saved": "affectkit.pipeline.robustness",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
