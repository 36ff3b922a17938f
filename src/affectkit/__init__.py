"""affectkit: facial expression and valence/arousal recognition."""
__version__ = "0.1.0"
