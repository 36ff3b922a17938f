"""The saved-model format: ``best_<Model>.safetensors`` (weights) + ``best_<Model>.json`` (everything needed to
rebuild the model and prepare its input, :mod:`affectkit.models.metadata`). No pickle is ever loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from affectkit.atomic import atomic_path, atomic_write_text
from affectkit.config import CLASS_NAMES, IMAGENET_MEAN, IMAGENET_STD, Config
from affectkit.errors import AffectkitError
from affectkit.models.factory import AffectModel, build_model
from affectkit.models.metadata import FORMAT, config_from_metadata, model_paths, read_metadata


def save_model(model: AffectModel, path: str | Path, config: Config, extra: dict[str, Any] | None = None) -> Path:
    """Write weights and metadata atomically; returns the weights path."""
    weights, meta_path = model_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "model": model.spec.key,
        "display_name": model.spec.display_name,
        "backbone": model.backbone_name,
        "use_light_models": config.use_light_models,
        "attention": config.attention,
        "head_width": config.head_width,
        "dropout_scale": config.dropout_scale,
        "class_names": list(CLASS_NAMES),
        "input_size": config.img_size,
        "color": "RGB",
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "outputs": ["expression_logits", "valence", "arousal"],
        "predicts_expression": model.predicts_expression,
        # The classes it was trained on; the others always get probability 0.
        "trained_classes": [name for name, trained in zip(CLASS_NAMES, model.output_classes.tolist()) if trained],
        "predicts_valence_arousal": model.predicts_valence_arousal,
        "config": config.model_dump(mode="json"),
        **(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    atomic_write_text(meta_path, json.dumps(meta, indent=2))
    return weights


def check_device(device: str | torch.device) -> None:
    """Refuse a device PyTorch does not know, or one this machine does not have, by name (PyTorch would fail later,
    in words about whatever it was loading)."""
    try:
        wanted = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        problem = f"--device {device!r} is not a device PyTorch knows ({exc}); use cpu, cuda or cuda:N."
        raise AffectkitError(problem) from None
    if wanted.type == "cuda" and not torch.cuda.is_available():
        raise AffectkitError(f"--device {device}: PyTorch sees no CUDA GPU on this machine; use --device cpu.")
    if wanted.type == "cuda" and (wanted.index or 0) >= torch.cuda.device_count():
        raise AffectkitError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"numbered from 0.")
    if wanted.type == "mps" and not torch.backends.mps.is_available():
        raise AffectkitError(f"--device {device}: PyTorch sees no Apple GPU (MPS) on this machine; use --device cpu.")


def load_model(path: str | Path, device: str = "cpu") -> tuple[AffectModel, dict[str, Any]]:
    """Rebuild a saved model from its two files, in eval mode."""
    check_device(device)
    weights, _ = model_paths(path)
    meta = read_metadata(path)
    if not weights.is_file():
        raise AffectkitError(f"{weights} is missing: the model's weights must sit beside its .json.")
    model = build_model(meta["model"], config_from_metadata(meta))
    try:
        state = load_file(str(weights), device=device)
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise AffectkitError(f"{weights} is not a readable safetensors file ({exc}).") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise AffectkitError(
            f"{weights} does not match a {meta['display_name']} model: "
            f"{len(missing)} missing and {len(unexpected)} unexpected tensors."
        )
    return model.to(device).eval(), meta
