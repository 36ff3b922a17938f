"""The served model's recent outputs against its reference profile (:mod:`affectkit.evaluation.drift`)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from affectkit.errors import AffectkitError
from affectkit.evaluation.drift import PSI_SHIFT, profile_of, profile_shift
from affectkit.serving.state import ServingState

DEFAULT_WINDOW = 1000
DEFAULT_MIN_FACES = 200


class DriftMonitor:
    """The last ``window`` faces served, compared with ``reference`` once there are ``min_faces`` of them; with
    ``state``, the window starts from the faces it holds and every face is written through to it."""

    def __init__(self, reference: dict[str, Any] | None, class_names: Sequence[str], window: int = DEFAULT_WINDOW,
                 min_faces: int = DEFAULT_MIN_FACES, state: ServingState | None = None):
        if not 1 <= min_faces <= window:
            raise AffectkitError(f"--drift-window ({window}) must be at least --drift-min-faces ({min_faces}), and that "
                                 "at least 1.")
        self.reference = reference
        self.class_names = list(class_names)
        self.min_faces = min_faces
        self._recent: deque[tuple[int, float, float, float]] = deque(maxlen=window)
        self._lock = threading.Lock()
        self._state = state
        if state is not None:
            self._recent.extend((self._class(e), *signals) for e, *signals in state.recent_served())

    def _class(self, expression: str) -> int:
        return self.class_names.index(expression) if self.class_names else 0  # 0: a valence/arousal model's

    def observe(self, faces: Sequence[dict[str, Any]]) -> None:
        # A valence/arousal model's faces have no expression and no confidence, an expression model's no valence and
        # arousal: stored as "" and 0 (its reference profile has none of them, so they are never compared).
        rows = [(f["expression"] or "", float(f["valence"] or 0.0), float(f["arousal"] or 0.0),
                 float(f["confidence"] or 0.0)) for f in faces]
        with self._lock:
            self._recent.extend((self._class(e), *signals) for e, *signals in rows)
            if self._state is not None:
                self._state.add_served(rows)

    def status(self) -> dict[str, Any]:
        """``status``: "no reference" (the model was saved without a profile), "collecting" (too few faces yet),
        "stable" or "drift"; with the PSI of each signal and the ones above the shift threshold."""
        with self._lock:
            recent = np.array(self._recent, dtype=float).reshape(-1, 4)
        out: dict[str, Any] = {"window_faces": len(recent), "window": self._recent.maxlen,
                               "min_faces": self.min_faces, "threshold": PSI_SHIFT}
        if self.reference is None:
            return {"status": "no reference", **out, "detail": "the model was saved without an output profile: "
                    "models calibrated by this version of affectkit (train, run, benchmark, calibrate) carry one"}
        out["reference_faces"] = self.reference["faces"]
        if len(recent) < self.min_faces:
            return {"status": "collecting", **out}
        current = profile_of(recent[:, 0].astype(int), len(self.class_names), recent[:, 1], recent[:, 2],
                             recent[:, 3])
        shift = profile_shift(self.reference, current)
        shifted = [signal for signal, value in shift.items() if value > PSI_SHIFT]
        return {"status": "drift" if shifted else "stable", **out, "psi": shift, "shifted": shifted}

    def render(self) -> list[str]:
        """Prometheus gauges: the window's size and, once it is compared, each signal's PSI."""
        status = self.status()
        lines = ["# HELP affectkit_drift_window_faces Faces in the drift monitor's window.",
                 "# TYPE affectkit_drift_window_faces gauge", f"affectkit_drift_window_faces {status['window_faces']}"]
        if "psi" in status:
            lines += ["# HELP affectkit_drift_psi Population stability index of the window's outputs against the "
                      "model's validation outputs.", "# TYPE affectkit_drift_psi gauge"]
            lines += [f'affectkit_drift_psi{{signal="{s}"}} {value!r}' for s, value in status["psi"].items()]
        return lines
