"""Starting weights: a local file (``--weights``: a model affectkit saved, whole, or a backbone state dict) or
pretrained weights resolved through :mod:`affectkit.models.registry` (``--pretrained``). Never an unpickled
arbitrary object."""

from __future__ import annotations

from pathlib import Path

import torch

from affectkit.errors import AffectkitError
from affectkit.models.factory import AffectModel
from affectkit.models.registry import (
    CLASSIFIER_PREFIXES,
    is_counter,
    resolve_pretrained_weights,
    sha256_of,
    to_timm_names,
)

_PREFIXES = ("module.", "model.", "backbone.", "encoder.")
NETWORK_PARTS = ("backbone.", "head.")  # an AffectModel's learnt tensors; its other buffers describe its training


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise AffectkitError(f"Weights file {path} does not exist.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with arbitrary objects (refused by weights_only), ...
        raise AffectkitError(f"Weights file {path} could not be read as a tensor state dict ({exc}).") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common training-checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AffectkitError(f"Weights file {path} does not hold a state dict of tensors.")
    return state


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def _match_by_order(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """Other naming schemes of the same architecture (torchvision's, efficientnet_pytorch's ``_conv_stem`` ...)
    list the same tensors in the same order: map them by position when every shape agrees."""
    try:
        return to_timm_names(state, own)
    except AffectkitError:
        return None


def load_weights_file(model: AffectModel, path: str | Path) -> str:
    """Start ``model`` from a local file and say what it took from it: a model affectkit saved of the same network
    gives all of it, backbone and heads (a model of yours fine-tuned on new data); any other state dict gives the
    backbone (:func:`load_backbone_weights`), which the custom CNN cannot take from another toolkit's file."""
    path = Path(path)
    state = read_state_dict(path)
    digest = sha256_of(path)[:16]
    if all(any(key.startswith(part) for key in state) for part in NETWORK_PARTS):
        _load_network(model, state, path)
        return f"the whole network (backbone and heads) from {path}, a model affectkit saved (SHA-256 {digest}...)"
    if model.spec.backbone == "custom_cnn":
        raise AffectkitError(f"Weights file {path} is not a model affectkit saved, and the custom CNN has no other "
                             "starting weights: give a best_CustomCNN.safetensors (of the same cnn_widths and "
                             "attention), or leave --weights out to train it from scratch.")
    missing, unexpected = _load_backbone_state(model, state, path)
    return (f"backbone weights from {path} (SHA-256 {digest}...; {len(missing)} missing, {len(unexpected)} unused "
            "tensors)")


def _load_network(model: AffectModel, state: dict[str, torch.Tensor], path: Path) -> None:
    network = {k: v for k, v in state.items() if k.startswith(NETWORK_PARTS)}
    own = {k: v for k, v in model.state_dict().items() if k.startswith(NETWORK_PARTS)}
    differ = sorted(k for k in own.keys() & network.keys() if own[k].shape != network[k].shape)
    missing, unexpected = own.keys() - network.keys(), network.keys() - own.keys()
    if missing or unexpected or differ:
        description = path.with_suffix(".json")
        saved = ""
        if description.is_file():
            import json

            meta = json.loads(description.read_text())
            saved = f" It is a {meta.get('display_name', meta.get('model'))} at {meta.get('input_size')} px."
        raise AffectkitError(
            f"Weights file {path} is a model affectkit saved, but not of this {model.spec.display_name} "
            f"({model.backbone_name}): {len(missing)} tensors missing, {len(unexpected)} unexpected, {len(differ)} of "
            f"another shape.{saved} Start from it the --model it is, with the settings that shape its network "
            "(cnn_widths, attention) as it was trained.")
    model.load_state_dict(network, strict=False)


def load_backbone_weights(model: AffectModel, path: str | Path) -> tuple[list[str], list[str]]:
    """Load a timm- or torchvision-named backbone state dict; returns (missing, unexpected) backbone keys."""
    return _load_backbone_state(model, read_state_dict(path), path)


def _load_backbone_state(model: AffectModel, state: dict[str, torch.Tensor],
                         path: str | Path) -> tuple[list[str], list[str]]:
    state = {_strip(k): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    filter_fn = getattr(__import__(type(model.backbone).__module__, fromlist=["x"]), "checkpoint_filter_fn", None)
    if filter_fn is not None:  # timm's converters map e.g. original/torchvision names onto timm's
        try:
            state = filter_fn(state, model.backbone)
        except Exception:  # a converter that does not apply to this naming leaves the dict as it was
            pass
    own = model.backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < 0.5 * len(own):
        by_order = _match_by_order(state, own)
        if by_order:
            usable, state = by_order, by_order
    if len(usable) < 0.5 * len(own):
        raise AffectkitError(
            f"Weights file {path} does not fit the {model.backbone_name} backbone: only {len(usable)} of its "
            f"{len(own)} tensors match by name and shape."
        )
    model.backbone.load_state_dict(usable, strict=False)
    missing = sorted(k for k in set(own) - set(usable) if not is_counter(k))
    unexpected = sorted(k for k in set(state) - set(usable) if not is_counter(k))
    return missing, unexpected


def load_pretrained_weights(model: AffectModel) -> tuple[str, str]:
    """Load the backbone's pretrained weights (registry, timm's cache, then the hub); returns what they are and where
    they came from (``imagenet:registry``, ``imagenet:timm-cache``, ``imagenet:hub``, ``fer2013:registry``) and a
    sentence saying which file, verified how."""
    own = model.backbone.state_dict()
    resolved = resolve_pretrained_weights(model.backbone_name, own)
    missing, unexpected = model.backbone.load_state_dict(resolved.state, strict=False)
    missing = [k for k in missing if not is_counter(k)]
    if missing or unexpected:
        raise AffectkitError(f"Pretrained weights for {model.backbone_name} left {len(missing)} backbone tensors "
                             f"missing and {len(unexpected)} unused ({resolved.detail}).")
    return resolved.kind, f"{resolved.detail}; 0 missing backbone tensors"
