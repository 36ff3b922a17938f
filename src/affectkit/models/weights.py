"""Pretrained backbone weights from a local file or timm's local cache; never from an unpickled arbitrary object."""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from affectkit.errors import AffectkitError
from affectkit.models.factory import AffectModel

_PREFIXES = ("module.", "model.", "backbone.", "encoder.")
_CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.", "last_linear.")


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
    """Other naming schemes of the same architecture (torchvision's EfficientNet, say) list the same tensors in the
    same order: map them by position when every shape agrees."""
    theirs = list(state.items())
    if len(theirs) != len(own) or any(v.shape != o.shape for (_, v), o in zip(theirs, own.values())):
        return None
    return {k: v for k, (_, v) in zip(own, theirs)}


def load_backbone_weights(model: AffectModel, path: str | Path) -> tuple[list[str], list[str]]:
    """Load a timm- or torchvision-named backbone state dict; returns (missing, unexpected) backbone keys."""
    state = {_strip(k): v for k, v in read_state_dict(path).items()}
    state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
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
    missing = sorted(set(own) - set(usable))
    unexpected = sorted(set(state) - set(usable))
    return missing, unexpected


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _create_pretrained(name: str, offline: bool) -> torch.nn.Module:
    import huggingface_hub.constants as hf

    saved = hf.HF_HUB_OFFLINE
    hf.HF_HUB_OFFLINE = offline or saved
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, global_pool="avg")
    finally:
        hf.HF_HUB_OFFLINE = saved


def load_pretrained_from_timm(model: AffectModel) -> None:
    """timm's own loading: its local cache first, then the hub when reachable; otherwise one clear sentence."""
    for offline in (True, False):
        if not offline and not _hub_reachable():
            break
        try:
            reference = _create_pretrained(model.backbone_name, offline)
        except Exception:  # not cached / not downloadable: try the next source
            continue
        model.backbone.load_state_dict(reference.state_dict())
        return
    raise AffectkitError(
        f"ImageNet weights for {model.backbone_name} are neither in timm's local cache nor downloadable (no network); "
        "pass --weights FILE with a local backbone state dict (.pth, .pt or .safetensors) instead."
    )
