"""Metrics, calibration and plots for expression and valence/arousal predictions."""
