"""Starting weights for a backbone: a local state-dict file (``--weights``) or pretrained weights resolved through
:mod:`affectkit.models.registry` (``--pretrained``). Never an unpickled arbitrary object."""

from __future__ import annotations

from pathlib import Path

import torch

from affectkit.errors import AffectkitError
from affectkit.models.factory import AffectModel
from affectkit.models.registry import CLASSIFIER_PREFIXES, is_counter, resolve_pretrained_weights, to_timm_names

_PREFIXES = ("module.", "model.", "backbone.", "encoder.")


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


def load_backbone_weights(model: AffectModel, path: str | Path) -> tuple[list[str], list[str]]:
    """Load a timm- or torchvision-named backbone state dict; returns (missing, unexpected) backbone keys."""
    state = {_strip(k): v for k, v in read_state_dict(path).items()}
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
