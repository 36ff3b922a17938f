"""Prometheus text-format metrics without the client library: counters and histograms with labels.

The per-class prediction counter and the valence/arousal histograms show what the model says over time; the drift
monitor's gauges say how far its recent outputs have moved from its outputs on the validation faces, and the
feedback gauges how it scores on the faces whose truth clients reported.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from affectkit.serving.drift import DriftMonitor
from affectkit.serving.feedback import FeedbackTracker

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
AFFECT_BUCKETS = (-0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    return "{" + ",".join(parts + ([extra] if extra else [])) + "}" if parts or extra else ""


def _number(value: float) -> str:
    value = float(value)
    if math.isinf(value):
        return "+Inf"
    return str(int(value)) if value.is_integer() else repr(value)


class Counter:
    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = (), initial: Sequence[tuple] = ()):
        self.name, self.help, self.labelnames = name, help_text, tuple(labelnames)
        self._values: dict[tuple, float] = defaultdict(float, {labels: 0.0 for labels in initial})
        self._lock = threading.Lock()

    def inc(self, *labels: Any, amount: float = 1.0) -> None:
        with self._lock:
            self._values[tuple(map(str, labels))] += amount

    def value(self, *labels: Any) -> float:
        return self._values.get(tuple(map(str, labels)), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        if not self.labelnames and not items:
            items = [((), 0.0)]
        return lines + [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in items]


class Gauge:
    """A value that goes up and down (requests in progress)."""

    def __init__(self, name: str, help_text: str):
        self.name, self.help, self.value = name, help_text, 0

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", f"{self.name} {self.value}"]


class Histogram:
    def __init__(self, name: str, help_text: str, labelnames: Sequence[str], buckets: Sequence[float]):
        self.name, self.help, self.labelnames = name, help_text, tuple(labelnames)
        self.bounds = (*sorted(buckets), math.inf)
        self._series: dict[tuple, list[float]] = {}  # labels -> per-bucket counts, then sum
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: Any) -> None:
        key = tuple(map(str, labels))
        with self._lock:
            series = self._series.setdefault(key, [0.0] * (len(self.bounds) + 1))
            series[next(i for i, b in enumerate(self.bounds) if value <= b)] += 1
            series[-1] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for key, series in items:
            cumulative = 0.0
            for bound, count in zip(self.bounds, series):
                cumulative += count
                le = 'le="' + _number(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {_number(cumulative)}")
            labels = _labels(self.labelnames, key)
            lines.append(f"{self.name}_sum{labels} {_number(series[-1])}")
            lines.append(f"{self.name}_count{labels} {_number(cumulative)}")
        return lines


class ServiceMetrics:
    """Everything ``/metrics`` exposes; methods are thread-safe."""

    def __init__(self, class_names: Sequence[str], drift: DriftMonitor | None = None,
                 feedback: FeedbackTracker | None = None):
        self.drift = drift
        self.feedback = feedback
        self.requests = Counter("affectkit_requests_total", "HTTP requests by route and status code.",
                                ("route", "status"))
        self.latency = Histogram("affectkit_request_duration_seconds", "HTTP request latency by route.",
                                 ("route",), LATENCY_BUCKETS)
        self.images = Counter("affectkit_predictions_total", "Images run through the model.")
        self.faces = Counter("affectkit_faces_total", "Faces classified.")
        self.no_face = Counter("affectkit_no_face_images_total", "Images in which no face was found.")
        self.classes = Counter("affectkit_predicted_class_total", "Faces by predicted expression.", ("class",),
                               initial=[(c,) for c in class_names])
        self.abstained = Counter("affectkit_abstained_faces_total",
                                 "Faces whose expression confidence was below the served threshold.")
        self.affect = Histogram("affectkit_predicted_affect", "Predicted valence and arousal.", ("dimension",),
                                AFFECT_BUCKETS)
        # Set by the server's event loop alone, so no lock.
        self.pending = Gauge("affectkit_model_requests_in_progress",
                             "Requests for the model being answered or waiting for it.")

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.inc(route, status)
        self.latency.observe(seconds, route)

    def observe_predictions(self, faces_per_image: Sequence[Sequence[dict[str, Any]]]) -> None:
        for faces in faces_per_image:
            self.images.inc()
            if not faces:
                self.no_face.inc()
            if self.drift is not None:
                self.drift.observe(faces)
            for face in faces:
                self.faces.inc()
                if face["expression"] is not None:  # None: a valence/arousal model
                    self.classes.inc(face["expression"])
                if face.get("abstained"):
                    self.abstained.inc()
                if face["valence"] is not None:  # None: an expression model
                    self.affect.observe(face["valence"], "valence")
                    self.affect.observe(face["arousal"], "arousal")

    def render(self) -> str:
        metrics = (self.requests, self.latency, self.pending, self.images, self.faces, self.no_face, self.classes,
                   self.abstained, self.affect)
        lines = [line for m in (*metrics, self.drift, self.feedback) if m is not None for line in m.render()]
        return "\n".join(lines) + "\n"
