"""affectkit: facial expression and valence/arousal recognition.

    import affectkit

    predictor = affectkit.load("runs/train/best_CustomCNN.safetensors")
    faces = predictor.predict("photo.jpg")          # one result per face; faces.to_frame() is a DataFrame
    best = affectkit.train("custom_cnn", "faces/")  # the best model's path
    metrics = affectkit.evaluate(best, "faces/")    # a metrics dict

See :mod:`affectkit.api` and the README's "Python API" section.
"""

import sys
import types

from affectkit.api import benchmark, evaluate, load, run, train

__version__ = "0.1.0"
__all__ = ["benchmark", "evaluate", "load", "run", "train"]


class _Package(types.ModuleType):
    """Keeps ``affectkit.benchmark`` the function: importing the submodule of the same name (the command's
    implementation) would otherwise rebind the package attribute to that module. The module stays importable
    as ``from affectkit.benchmark import ...``."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "benchmark" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
