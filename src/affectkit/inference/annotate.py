"""Draw predictions onto an image: box, label with confidence (or valence and arousal), probability bars and a
valence-arousal dot."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# One colour per class (RGB), shared by box, label and bar so a glance links them.
PALETTE = [(158, 158, 158), (255, 193, 7), (33, 150, 243), (156, 39, 176),
           (96, 125, 139), (76, 175, 80), (244, 67, 54), (255, 112, 67)]
WITHOUT_EXPRESSION = (255, 255, 255)  # the box of a valence/arousal model's face
ABSTAINED = (120, 120, 120)  # the box of a face the model is too unsure of to name its expression
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _unit(image: np.ndarray) -> int:
    """Drawing scale in pixels, so overlays stay legible on thumbnails and on 4K frames alike."""
    return max(7, round(min(image.shape[:2]) / 55))


def _blend_rect(image: np.ndarray, x1: int, y1: int, x2: int, y2: int, colour=(0, 0, 0), opacity=0.55) -> None:
    x1, y1 = max(0, x1), max(0, y1)
    x2, y2 = min(image.shape[1], x2), min(image.shape[0], y2)
    if x2 > x1 and y2 > y1:
        region = image[y1:y2, x1:x2]
        region[:] = (region * (1 - opacity) + np.array(colour) * opacity).astype(np.uint8)


def _panel_origin(image: np.ndarray, box: list[int], width: int, height: int, gap: int) -> tuple[int, int]:
    """Right of the box if it fits, else left of it, else inside the image's right edge."""
    x1, y1, x2, _ = box
    if x2 + gap + width <= image.shape[1]:
        x = x2 + gap
    elif x1 - gap - width >= 0:
        x = x1 - gap - width
    else:
        x = max(0, image.shape[1] - width)
    return x, min(max(0, y1), max(0, image.shape[0] - height))


def _draw_label(image: np.ndarray, text: str, x: int, y: int, colour, unit: int) -> None:
    scale, thick = unit / 22, max(1, unit // 10)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    top = y - th - base - 4 if y - th - base - 4 >= 0 else y
    cv2.rectangle(image, (x, top), (x + tw + 6, top + th + base + 4), colour, -1)
    cv2.putText(image, text, (x + 3, top + th + 2), FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)


def _draw_bars(image: np.ndarray, probs: dict[str, float], x: int, y: int, unit: int) -> int:
    """Eight bars labelled with class abbreviations; returns the y below them."""
    scale, label_w, bar_w = unit / 30, int(unit * 2.6), unit * 5
    for i, (name, p) in enumerate(probs.items()):
        top = y + i * unit
        cv2.putText(image, name[:3], (x + 2, top + unit - 2), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.rectangle(image, (x + label_w, top + 1), (x + label_w + bar_w, top + unit - 2), (90, 90, 90), -1)
        cv2.rectangle(image, (x + label_w, top + 1), (x + label_w + round(bar_w * p), top + unit - 2),
                      PALETTE[i % len(PALETTE)], -1)
    return y + len(probs) * unit


def _draw_circumplex(image: np.ndarray, valence: float, arousal: float, cx: int, cy: int, radius: int) -> None:
    """Valence on x (right = pleasant), arousal on y (up = aroused), as in Russell's circumplex."""
    cv2.circle(image, (cx, cy), radius, (220, 220, 220), 1, cv2.LINE_AA)
    cv2.line(image, (cx - radius, cy), (cx + radius, cy), (140, 140, 140), 1)
    cv2.line(image, (cx, cy - radius), (cx, cy + radius), (140, 140, 140), 1)
    dot = (cx + round(valence * radius), cy - round(arousal * radius))
    cv2.circle(image, dot, max(2, radius // 6), (255, 64, 64), -1, cv2.LINE_AA)


def draw_predictions(image_rgb: np.ndarray, faces: list[dict[str, Any]]) -> np.ndarray:
    """A copy of the image with every face's prediction drawn; a face without a box covers the whole image."""
    canvas = image_rgb.copy()
    unit = _unit(canvas)
    height, width = canvas.shape[:2]
    for face in faces:
        box = face["box"] or [0, 0, width - 1, height - 1]
        if face["expression"] is None:  # a valence/arousal model
            colour, label = WITHOUT_EXPRESSION, f"V {face['valence']:+.2f} A {face['arousal']:+.2f}"
        elif face.get("abstained"):
            colour, label = ABSTAINED, f"unsure ({face['expression']} {face['confidence']:.2f})"
        else:
            colour = PALETTE[face["expression_id"] % len(PALETTE)]
            label = f"{face['expression']} {face['confidence']:.2f}"
        cv2.rectangle(canvas, tuple(box[:2]), tuple(box[2:]), colour, max(2, unit // 5))
        _draw_label(canvas, label, box[0], box[1], colour, unit)
        # An expression model (trained without valence/arousal) has no point on the circumplex.
        radius = unit * 2 if face["valence"] is not None else 0
        panel_w, panel_h = int(unit * 7.8), len(face["probabilities"]) * unit + 2 * radius + unit
        px, py = _panel_origin(canvas, box, panel_w, panel_h, unit // 2)
        _blend_rect(canvas, px, py, px + panel_w, py + panel_h)
        below = _draw_bars(canvas, face["probabilities"], px, py, unit)
        if radius:
            _draw_circumplex(canvas, face["valence"], face["arousal"], px + panel_w // 2, below + radius + unit // 2,
                             radius)
    return canvas
