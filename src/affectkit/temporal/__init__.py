"""Temporal modelling of face clips: a face model's frame-by-frame verdicts, read by a learned sequence model (the
seed's "process video sequences for dynamic emotion changes")."""

from affectkit.temporal.clips import read_clips
from affectkit.temporal.explain import ExplainedClips, explain_temporal
from affectkit.temporal.run import TemporalModel, TemporalRun, load_temporal, predict_temporal, run_temporal

__all__ = ["ExplainedClips", "TemporalModel", "TemporalRun", "explain_temporal", "load_temporal", "predict_temporal",
           "read_clips", "run_temporal"]
