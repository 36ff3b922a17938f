"""affectkit: facial expression and valence/arousal recognition.

    import affectkit

    predictor = affectkit.load("runs/train/best_CustomCNN.safetensors")
    faces = predictor.predict("photo.jpg")          # one result per face; faces.to_frame() is a DataFrame
    best = affectkit.train("custom_cnn", "faces/")  # the best model's path
    metrics = affectkit.evaluate(best, "faces/")    # a metrics dict

See :mod:`affectkit.api` and the README's "Python API" section.
"""

from affectkit.api import (
    benchmark,
    calibrate,
    compare,
    evaluate,
    explain,
    explain_fusion,
    explain_temporal,
    export,
    fuse,
    fuse_predict,
    load,
    predict_temporal,
    predict_temporal_frames,
    pretrained,
    robustness,
    run,
    train,
    train_temporal,
    train_temporal_frames,
)

__version__ = "0.1.0"
__all__ = ["benchmark", "calibrate", "compare", "evaluate", "explain", "explain_fusion", "explain_temporal", "export",
           "fuse", "fuse_predict", "load", "predict_temporal", "predict_temporal_frames", "pretrained", "robustness",
           "run", "train", "train_temporal", "train_temporal_frames"]
