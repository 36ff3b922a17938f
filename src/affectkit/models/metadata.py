"""A saved model's files and description: where ``best_<Model>.safetensors`` and its ``best_<Model>.json`` lie, and
what the description says. Read without PyTorch, so that a model exported to ONNX is described and served without
it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from affectkit.atomic import atomic_write_text
from affectkit.config import Config
from affectkit.errors import AffectkitError
from affectkit.runs import RunFolder

FORMAT = "affectkit-model/1"
DEFAULT_OPSET = 17  # the ONNX opset every affectkit model exports to
# A model's exports, each loaded by onnxruntime: ONNX, and ONNX Runtime Mobile's format (``export --format ort``).
EXPORT_SUFFIXES = (".onnx", ".ort")
MODEL_SUFFIXES = (".safetensors", ".json", *EXPORT_SUFFIXES)


def is_export(path: str | Path) -> bool:
    """Whether ``path`` names an export of a model (``.onnx``, ``.int8.onnx``, ``.ort``), not its weights."""
    return Path(path).suffix.lower() in EXPORT_SUFFIXES


def export_label(path: str | Path) -> str:
    """Which kind of export ``path`` names: "ONNX", "int8 ONNX", "ORT" or "int8 ORT"."""
    path = Path(path)
    kind = "ORT" if path.suffix.lower() == ".ort" else "ONNX"
    return f"int8 {kind}" if path.with_suffix("").suffix == ".int8" else kind


def export_tag(path: str | Path) -> str:
    """:func:`export_label` as a part of a file name: "int8_ONNX"."""
    return export_label(path).replace(" ", "_")


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """``x.safetensors``, ``x.json``, the stem ``x`` or its float export (``x.onnx``, ``x.ort``) -> (weights,
    metadata); a run folder -> the model its report chose. Another folder or another kind of file is refused:
    arguments given the wrong way round (``affectkit evaluate DATA MODEL``) end up here; so is an int8 export, whose
    answers are not its float model's."""
    path = Path(path)
    if path.is_dir():
        path = _chosen_in(path)
    if path.is_dir() or (path.is_file() and path.suffix.lower() not in MODEL_SUFFIXES):
        raise AffectkitError(f"{path} is a {'folder' if path.is_dir() else 'file'}, not a saved model (a "
                             ".safetensors file with its .json beside it, or its .onnx or .ort export); the model "
                             "comes first: affectkit predict MODEL INPUTS..., affectkit evaluate MODEL DATA.")
    stem = path.with_suffix("") if path.suffix in MODEL_SUFFIXES else path
    if is_export(path) and stem.suffix == ".int8":
        float_model = stem.with_suffix("").name + ".safetensors"
        raise AffectkitError(f"{path} is an int8 export: this reads the saved model it came from ({float_model}); "
                             f"`affectkit evaluate {path.name} DATA` scores the int8 file itself, `affectkit export "
                             f"{float_model} --int8 --data DATA` against it.")
    # Appended, not swapped in: a timm model's display name may hold a dot (``timm-vit_base.augreg``).
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _chosen_in(folder: Path) -> Path:
    """The weights of the model a run folder's report chose, or of the one model a folder holds (``train``'s,
    ``pretrained``'s); the folder itself where neither is, which is then refused naming the models it holds."""
    run = RunFolder(folder)
    chosen = run.chosen_model()
    if chosen is not None and run.weights(chosen).is_file():
        return run.weights(chosen)
    saved = sorted(p.name for p in folder.glob("best_*.safetensors"))
    if len(saved) == 1:
        return folder / saved[0]
    if saved:
        raise AffectkitError(f"{folder} is a folder holding {len(saved)} saved model(s) ({', '.join(saved)}) and no "
                             "report's choice among them: give one of them.")
    return folder


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
    weights, meta_path = model_paths(path)
    if is_export(path) and Path(path).is_file() and not meta_path.is_file():
        raise AffectkitError(f"{path} is an export: predict and serve run it alone, but this reads the saved model "
                             f"it came from ({meta_path.name} and {weights.name} beside it).")
    if not meta_path.is_file() and not weights.is_file() and not weights.with_suffix(".onnx").is_file():
        raise AffectkitError(f"{path}: no such model (neither {weights.name} nor {meta_path.name} is in "
                             f"{meta_path.parent.resolve()}).")
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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
