"""The saved-model format: ``best_<Model>.safetensors`` (weights) + ``best_<Model>.json`` (everything needed to
rebuild the model and prepare its input). No pickle is ever loaded."""

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
from affectkit.runs import RunFolder

FORMAT = "affectkit-model/1"


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """``x.safetensors``, ``x.json`` or the stem ``x`` -> (weights, metadata); a run folder -> the model its report
    chose. Another folder or another kind of file is refused: arguments given the wrong way round (``affectkit
    evaluate DATA MODEL``) end up here."""
    path = Path(path)
    if path.is_dir():
        path = _chosen_in(path)
    if path.is_dir() or (path.is_file() and path.suffix.lower() not in {".safetensors", ".json", ".onnx"}):
        raise AffectkitError(f"{path} is a {'folder' if path.is_dir() else 'file'}, not a saved model (a "
                             ".safetensors file with its .json beside it, or its .onnx export); the model comes "
                             "first: affectkit predict MODEL INPUTS..., affectkit evaluate MODEL DATA.")
    stem = path.with_suffix("") if path.suffix in {".safetensors", ".json", ".onnx"} else path
    # Appended, not swapped in: a timm model's display name may hold a dot (``timm-vit_base.augreg``).
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _chosen_in(folder: Path) -> Path:
    """The weights of the model a run folder's report chose; the folder itself where it chose none, which is then
    refused naming the models it holds."""
    run = RunFolder(folder)
    chosen = run.chosen_model()
    if chosen is not None and run.weights(chosen).is_file():
        return run.weights(chosen)
    saved = sorted(p.name for p in folder.glob("best_*.safetensors"))
    if saved:
        raise AffectkitError(f"{folder} is a folder holding {len(saved)} saved model(s) ({', '.join(saved)}) and no "
                             "report's choice among them: give one of them.")
    return folder


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


def update_metadata(path: str | Path, **fields: Any) -> dict[str, Any]:
    """Add or replace fields of a saved model's description (atomically)."""
    _, meta_path = model_paths(path)
    meta = read_metadata(path)
    meta.update(fields)
    atomic_write_text(meta_path, json.dumps(meta, indent=2))
    return meta


SYNTHETIC_WARNING = ("This model was trained on synthetic demo faces (affectkit make-demo-data), never on photographs "
                     "of people: it must not be used on real people.")


def synthetic_data_warning(meta: dict[str, Any]) -> str | None:
    """The warning to show wherever a model trained on synthetic faces is used, or None."""
    return SYNTHETIC_WARNING if meta.get("trained_on_synthetic_data") else None


def predicts_expression(meta: dict[str, Any]) -> bool:
    """False for a valence/arousal model (its training faces had no expression class); models saved before this
    was recorded all predict expressions."""
    return bool(meta.get("predicts_expression", True))


def predicts_valence_arousal(meta: dict[str, Any]) -> bool:
    """False for an expression model (no face it was trained on had valence and arousal); models saved before this
    was recorded all report them."""
    return bool(meta.get("predicts_valence_arousal", True))


def trained_classes(meta: dict[str, Any]) -> list[str]:
    """The expression classes a model learnt (the others always get probability 0: absent from its training data);
    models saved before this was recorded learnt all of them."""
    return list(meta.get("trained_classes", meta["class_names"]))


def read_metadata(path: str | Path) -> dict[str, Any]:
    _, meta_path = model_paths(path)
    if not meta_path.is_file():
        raise AffectkitError(f"{meta_path} is missing: a saved model is a .safetensors file plus its .json beside it.")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise AffectkitError(f"{meta_path} is not valid JSON ({exc}).") from None
    if meta.get("format") != FORMAT:
        raise AffectkitError(f"{meta_path} is not an affectkit model description (format {meta.get('format')!r}).")
    return meta


def fusion_branches(fusion: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """A fusion model's metadata (its ``fusion`` entry) as (branch, weight, temperature, val score alone) per
    branch, the score by the fusion's criterion (:func:`fusion_criterion`); a two-branch file written before fusions
    took more branches stores the second one's weight alone."""
    weights = fusion["weights"] if "weights" in fusion else [1 - fusion["weight"], fusion["weight"]]
    alone = fusion.get("val_va_mse_branches") or fusion["val_nll_branches"]
    return list(zip(fusion["branches"], weights, fusion["temperatures"], alone))


def fusion_criterion(fusion: dict[str, Any]) -> tuple[str, float]:
    """How a fusion model's weights were chosen on val and the fused outputs' score by it: log-loss, or for
    valence/arousal models their valence/arousal MSE."""
    if fusion.get("val_va_mse") is not None:
        return fusion["criterion"], fusion["val_va_mse"]
    return "log-loss", fusion["val_nll"]


def config_from_metadata(meta: dict[str, Any]) -> Config:
    return Config.model_validate(meta["config"])


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
