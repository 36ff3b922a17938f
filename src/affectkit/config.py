"""Typed run configuration with the spec's defaults, loaded from YAML and overridable from the command line.

Every knob of the spec's ``Config`` lives here under a snake_case name (``IMG_SIZE`` -> ``img_size``); the
upper-case spellings are accepted in YAML files too, so a config copied from the original notebook works.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from affectkit.errors import AffectkitError

CLASS_NAMES: tuple[str, ...] = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
NUM_CLASSES = len(CLASS_NAMES)
# The expression of a face annotated for valence/arousal only (an Aff-Wild2 VA frame, a manifest row without a
# class): the expression loss and scores leave it out, as the valence/arousal ones leave out NaN.
NO_EXPRESSION = -1
# Every model's input normalisation (the backbones' ImageNet convention; the FER2013 network undoes it in its graph).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentationConfig(_Strict):
    """The spec's ``AugmentationParams`` plus the opt-in improvements of its "future work" list."""

    rotation_range: float = Field(20.0, description="Largest random rotation of a training image, in degrees.")
    width_shift_range: float = Field(0.2, description="Largest random horizontal shift, as a fraction of the width.")
    height_shift_range: float = Field(0.2, description="Largest random vertical shift, as a fraction of the height.")
    horizontal_flip: bool = Field(True, description="Mirror half of the training images (landmarks follow).")
    zoom_range: float = Field(0.2, description="Largest random zoom in or out, as a fraction of the size.")
    shear_range: float = Field(0.1, description="Largest random shear, in degrees.")
    fill_mode: Literal["nearest", "constant", "reflect", "wrap"] = Field(
        "nearest", description="How pixels moved in from outside the image are filled.")
    mixup_alpha: float = Field(0.0, description="MixUp Beta(alpha, alpha) parameter; 0 turns MixUp off.")
    cutmix_alpha: float = Field(0.0, description="CutMix Beta(alpha, alpha) parameter; 0 turns CutMix off.")
    mix_prob: float = Field(1.0, description="Probability that a training batch is mixed when MixUp/CutMix is on.")
    rand_augment: str | None = Field(None, description='A timm RandAugment config string, e.g. "rand-m9-mstd0.5".')
    trivial_augment: bool = Field(False, description="Add TrivialAugment (one random operation per image).")
    random_erasing: float = Field(
        0.0, ge=0, le=1, description="Probability of blanking one random rectangle (2-25% of a training image).")
    degrade: float = Field(0.0, ge=0, le=1, description=(
        "Probability of downscaling, JPEG-compressing, blurring or noising a training image."))
    face_mask: float = Field(
        0.0, ge=0, le=1, description="Probability of drawing a face mask over a training face's nose, mouth and chin.")


class LossConfig(_Strict):
    """Total = expression_weight * CE + valence_weight * L(val) + arousal_weight * L(aro)."""

    expression_weight: float = Field(1.0, description="Weight of the expression cross-entropy in the total loss.")
    valence_weight: float = Field(0.5, description="Weight of the valence regression loss in the total loss.")
    arousal_weight: float = Field(0.5, description="Weight of the arousal regression loss in the total loss.")
    regression: Literal["mse", "ccc"] = Field(
        "mse", description="Valence/arousal loss: mean squared error, or 1 - concordance correlation (ccc).")
    focal_gamma: float | None = Field(None, description="Focal loss gamma for the expression head; null: plain CE.")
    class_weighting: bool = Field(False, description="Weight the expression loss by inverse training-class frequency.")
    label_smoothing: float = Field(0.0, description="Label smoothing of the expression targets.")


class Config(_Strict):
    img_size: int = Field(224, ge=16, le=1024, description="Input size in pixels (square).")
    batch_size: int = Field(32, ge=1, description="Images per training batch (per device).")
    epochs: int = Field(
        30, ge=0, description="Phase-1 epochs (head on the frozen backbone; the custom CNN's only phase).")
    fine_tune_epochs: int = Field(10, ge=0, description="Phase-2 epochs (the whole model fine-tuned).")
    validation_split: float = Field(0.15, gt=0, lt=1, description="Fraction of the data held out for validation.")
    test_split: float = Field(0.15, gt=0, lt=1, description="Fraction of the data held out for testing.")
    learning_rate: float = Field(1e-3, gt=0, description="Phase-1 learning rate.")
    fine_tune_lr: float = Field(1e-4, gt=0, description="Phase-2 learning rate.")
    max_samples: int | None = Field(None, ge=8, description="Train on a stratified subsample of this many images.")
    use_light_models: bool = Field(
        False, description="MobileNetV2 stands in for ResNet50 and EfficientNet-Lite0 for EfficientNet-B0.")
    pretrained: bool = Field(
        False, description="Start from pretrained weights (ImageNet; FER2013 for mini_xception), as --pretrained does.")
    streaming_mode: bool = Field(
        True, description="Read batches from the memory-mapped image cache instead of loading it into RAM.")
    seed: int = Field(42, description="Random seed for the split, initialisation and augmentation.")

    early_stopping_patience: int = Field(
        10, ge=1, description="Epochs without a better validation score before a phase stops (more where "
        "fine_tune_min_steps stretches phase 2).")
    lr_reduce_factor: float = Field(
        0.5, gt=0, lt=1, description="Plateau schedule: factor the learning rate is cut by.")
    lr_reduce_patience: int = Field(
        5, ge=0, description="Plateau schedule: epochs without improvement before the learning rate is cut.")
    min_lr: float = Field(1e-7, description="Lowest learning rate of either schedule.")
    # "plateau" is the spec's ReduceLROnPlateau; "cosine" converges in a fixed short budget (the demo) where plateau
    # halvings come too late.
    lr_schedule: Literal["plateau", "cosine"] = Field(
        "plateau", description="plateau: cut the rate when validation loss stalls; cosine: anneal to min_lr.")
    weight_decay: float = Field(0.0, description="Weight decay of the optimiser.")
    # "adamw" decouples weight decay from the adaptive step (Loshchilov & Hutter); "adam" adds it to the gradient.
    optimizer: Literal["adam", "adamw"] = Field("adam", description="Optimiser: adam or adamw.")
    # Macro-F1 weighs every class alike and is what expression benchmarks report on skewed sets.
    selection_metric: Literal["val_loss", "val_macro_f1"] = Field(
        "val_loss", description="Validation number that chooses the kept model and drives early stopping.")
    tta_flip: bool = Field(
        False, description="Test-time augmentation: average the predictions for each image and its mirror image.")
    # Grad-CAM costs a backward pass a face; occlusion and integrated gradients, whose maps rank a face's pixels
    # more faithfully, a forward pass per place of its patch and a forward and backward pass per point of its path
    # (bench/results/explain_faithfulness.md).
    report_maps: Literal["gradcam", "occlusion", "ig", "none"] = Field(
        "gradcam", description="Map of where the chosen model (run) or recipe (benchmark) looks: gradcam, occlusion, "
                               "ig or none.")
    # Fine-tuning (phase 2) of a pretrained backbone. Unfreezing must not throw away what phase 1 learned: a fresh
    # Adam moves every weight by about the learning rate in its first steps whatever the gradient, and BatchNorm
    # in train mode swaps the pretrained statistics for those of small face batches. So the learning rate warms up,
    # BatchNorm statistics stay frozen where the backbone started from loaded weights (a random backbone needs them
    # trained), and the backbone may learn slower than the head.
    fine_tune_warmup_epochs: float = Field(
        1.0, ge=0, description="Phase 2: epochs over which the learning rate warms up linearly.")
    fine_tune_batchnorm: Literal["auto", "frozen", "train"] = Field(
        "auto", description="Phase 2 BatchNorm statistics; auto: frozen when the backbone started from loaded weights.")
    backbone_lr_scale: float = Field(
        1.0, gt=0, le=1, description="Phase 2: the backbone's learning rate as a fraction of the head's.")
    fine_tune_min_steps: int = Field(
        0, ge=0, description="Phase 2: at least this many optimiser steps (at most 3x fine_tune_epochs); 0: off.")
    # Averaged weights smooth the last epochs' step noise, which on a few hundred faces (and noisy labels) moves the
    # validation score from epoch to epoch as much as the learning does.
    ema_decay: float = Field(
        0.0, ge=0, lt=1, description="Keep a moving average of the weights where the backbone trains (decay at "
        "most this); 0: off.")
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="DataLoader worker processes; auto picks by hardware.")
    weighted_sampler: bool = Field(
        False, description="Draw training images with probability inverse to their class frequency.")
    # Ten annotators who split 6 / 4 between two expressions say something a single class throws away (Barsoum et
    # al. 2016 trained FER+ on the distribution and beat its majority labels).
    label_distribution: bool = Field(
        False, description="Where the data gives annotators' votes (FER+), train on their distribution, not one class.")

    augmentation: AugmentationConfig = Field(
        default_factory=AugmentationConfig, description="Training-image augmentation (augmentation.* keys).")
    loss: LossConfig = Field(default_factory=LossConfig, description="The multi-task loss (loss.* keys).")

    # Model options.
    dropout_scale: float = Field(1.0, ge=0, le=1.9, description="Multiplies the spec's 0.5 / 0.3 head dropout rates.")
    head_width: int = Field(
        512, ge=8, description="Width of the head's first dense layer (the spec's 512; the second is half).")
    attention: Literal["none", "se", "cbam", "self"] = Field(
        "none", description="Attention in the custom CNN only: se or cbam after each stage, self over the last stage.")
    cnn_widths: list[Annotated[int, Field(ge=4, le=1024)]] = Field(
        [32, 64, 128, 256], min_length=2, max_length=6,
        description="Custom CNN: channels of each stage; every stage but the last halves the resolution.")
    cnn_convs_per_stage: int = Field(1, ge=1, le=4, description="Custom CNN: conv-BatchNorm-ReLU layers in each stage.")
    # FER2013's own classifier read 28,709 faces: its verdict as 7 more features for a head that learns from a few
    # hundred (measured: bench/results/recipe_ablations_networks.md).
    mini_xception_scores: bool = Field(
        False, description="MiniXception's head sees FER2013's 7 expression scores beside the pooled features.")

    # Speed.
    channels_last: bool = Field(True, description="Train in the channels-last memory layout (faster on CPU and GPU).")
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        "auto", description="Training precision; auto: bf16 autocast where the hardware has it, else 32.")
    compile: bool = Field(False, description="torch.compile the model before training.")
    augment_on_device: bool = Field(
        False, description="Flip and affine warp of training images run batched on the GPU (the loader only draws them).")
    phase1_feature_cache: bool = Field(
        True, description="Phase 1 trains the head on stored features of the frozen backbone.")
    phase1_views: int = Field(
        4, ge=0, description="Augmented views of each training image stored for phase 1 (besides the clean one).")
    devices: int | str = Field(1, description="Devices per node (DDP when more than 1), a number or auto.")
    num_nodes: int = Field(1, description="Number of nodes for multi-node DDP (launched with torchrun).")
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field("auto", description="Hardware to train on.")
    tensorboard: bool = Field(True, description="Write TensorBoard logs of every training run to RUN/logs.")

    cache_dir: str | None = Field(
        None, description="Folder of the decoded image cache (default ~/.cache/affectkit or $AFFECTKIT_CACHE).")

    # Reading the data (see affectkit.data.layouts). A group_pattern such as ^(S\d+)_ suits CK+; splits then keep
    # every subject on one side.
    layout: str | None = Field(
        None, description="Force a data layout by its name (--layout's help, the README's Data), not detect it.")
    class_map: dict[str, str] = Field(
        default_factory=dict, description='Class-folder name -> class name or "ignore" (class_map.NAME=CLASS).')
    group_pattern: str | None = Field(
        None, description="Regex searched in each image's file name; its first group is the subject for splits.")
    label_pattern: str | None = Field(
        None, description="Regex read in each image's file name: groups expression and subject (JAFFE, KDEF, RaFD "
                          "need none).")
    affwild2_frame_step: int = Field(
        1, ge=1, description="Aff-Wild2: read every n-th annotated frame of each video (neighbours are near copies).")
    affwild2_task: Literal["auto", "expression", "valence_arousal", "multi_task"] = Field(
        "auto",
        description="Aff-Wild2: the challenge whose frames and split are read (auto: EXPR, else multi-task, else VA).")
    ckplus_neutral_onset: bool = Field(
        False, description="CK+ and Oulu-CASIA sequences: each labelled sequence's first frame is also a Neutral face "
                           "(seven or eight classes).")
    affectnet_unclassed_faces: bool = Field(
        False, description="AffectNet: None (8) and Uncertain (9) faces with valence/arousal train those heads alone "
                           "(else quarantined).")

    # Networks of one recipe may want different settings: a 57k-parameter network that already knows expressions
    # (MiniXception) moves its backbone further than an ImageNet backbone twenty times its size should.
    model_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Settings of one model, alone or as a fusion's branch, by its key: "
        "model_settings.KEY.NAME=VALUE.")

    @field_validator("test_split")
    @classmethod
    def _splits_leave_training_data(cls, v: float, info: Any) -> float:
        val = info.data.get("validation_split", 0.15)
        if v + val >= 0.9:
            raise ValueError(f"validation_split + test_split = {v + val:.2f} leaves too little training data")
        return v

    @model_validator(mode="after")
    def _device_augmentation_is_flip_and_warp(self) -> Config:
        aug = self.augmentation
        if self.augment_on_device and (aug.rand_augment or aug.trivial_augment or aug.random_erasing > 0
                                       or aug.degrade > 0 or aug.face_mask > 0 or aug.fill_mode == "wrap"):
            raise ValueError("augment_on_device does the flip and the affine warp only (fill_mode nearest, constant "
                             "or reflect): RandAugment, TrivialAugment, random erasing, degrade and face_mask need "
                             "it off")
        return self

    @model_validator(mode="after")
    def _model_settings_are_config_changes(self) -> Config:
        for model, changes in self.model_settings.items():
            shared = sorted(set(changes) & RUN_WIDE_KEYS)
            if shared:
                raise ValueError(f"model_settings.{model}: {', '.join(shared)} is shared by every model of a run "
                                 "and cannot be set for one model")
            try:
                self._with_changes(changes)
            except ValidationError as exc:
                raise ValueError(f"model_settings.{model}: {_problems(exc)}") from None
        return self

    def for_model(self, key: str) -> Config:
        """This config with the changes ``model_settings`` holds for the model ``key`` (as ``--model`` names it)."""
        changes = self.model_settings.get(_normalise_key(key))
        return self._with_changes(changes) if changes else self

    def _with_changes(self, changes: dict[str, Any]) -> Config:
        data = self.model_dump()
        data["model_settings"] = {}  # checked without them: the changes are not applied again inside their result
        return Config.model_validate(_merge(data, changes)).model_copy(update={"model_settings": self.model_settings})

    # -- I/O -------------------------------------------------------------------------------------------------

    def dump_yaml(self) -> str:
        """Every key as YAML, in declaration order; ``load_config`` reads it back to an equal config."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def to_yaml(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.dump_yaml())
        return path

    def override(self, **changes: Any) -> Config:
        """A copy with dotted-key changes applied (``{"loss.focal_gamma": 2}``); ``None`` values are skipped, so
        unset command-line options change nothing."""
        return self.with_values({k: v for k, v in changes.items() if v is not None})

    def with_values(self, changes: Mapping[str, Any]) -> Config:
        """A copy with dotted-key changes applied, ``None`` included (``--set loss.focal_gamma=null`` clears it)."""
        data = self.model_dump()
        for key, value in changes.items():
            _set_dotted(data, _normalise_key(key), value)
        return _validate(data, source="the settings given (options, --set pairs or keyword arguments)")


# How ``affectkit explain`` maps where a model looks (its --method, the report_maps setting): the name titles give it.
MAP_METHODS = {"gradcam": "Grad-CAM", "occlusion": "occlusion", "ig": "integrated gradients"}

# How a data set is read: the settings of a data folder's own affectkit.yaml that every command takes from it.
READING_KEYS = ("layout", "class_map", "group_pattern", "label_pattern", "ckplus_neutral_onset",
                "affwild2_frame_step", "affwild2_task", "affectnet_unclassed_faces")

# What every model of a run shares (its data, split, input size and starting weights, and the prediction rule a
# fusion of them applies), so ``model_settings`` cannot change it for one model.
RUN_WIDE_KEYS = frozenset({
    "img_size", "validation_split", "test_split", "max_samples", "seed", "use_light_models", "pretrained",
    "streaming_mode", "tta_flip", "devices", "num_nodes", "accelerator", "cache_dir", *READING_KEYS,
    "model_settings",
})


def _normalise_key(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def dotted_items(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as one level of dotted keys (``{"loss": {"focal_gamma": 2}}`` -> ``{"loss.focal_gamma": 2}``),
    the inverse of what ``--set`` keys do."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat |= dotted_items(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {prefix + key: value}
    return flat


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


def _lower_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {_normalise_key(str(k)): _lower_keys(v) for k, v in obj.items()}
    return obj


def _validate(data: dict, source: str) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise AffectkitError(f"Invalid configuration in {source}: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: "
                     + (_unknown_key(e["loc"]) if e["type"] == "extra_forbidden"
                        else e["msg"].removeprefix("Value error, ")) for e in exc.errors())


def _unknown_key(loc: tuple) -> str:
    """What to say of a key no config has (``epoch``): the setting meant, where one is spelt alike (``epochs``)."""
    model: Any = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return "not a setting (`affectkit config` lists every key)"
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    meant = f"did you mean {''.join(f'{part}.' for part in loc[:-1])}{close[0]}? " if close else ""
    return f"not a setting ({meant}`affectkit config` lists every key)"


DATA_CONFIG_NAME = "affectkit.yaml"


@dataclass(frozen=True)
class DataConfig:
    """A data set's own settings file (``DATA/affectkit.yaml``; :func:`affectkit.data.archives.data_config` finds
    it, in a folder or an archive): where it is (``where``, for messages) and its text."""

    where: str
    text: str


def _read_mapping(path: Path) -> dict:
    if not path.is_file():
        raise AffectkitError(f"Config file {path} does not exist.")
    return _parse_mapping(path.read_text(), str(path))


def _parse_mapping(text: str, where: str) -> dict:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise AffectkitError(f"Config file {where} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise AffectkitError(f"Config file {where} must hold a mapping of option names to values.")
    return _lower_keys(data)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# How many faces `affectkit demo` renders by default; here, not in the demo module, so the CLI reads it without
# importing torch or OpenCV at start-up.
DEMO_FACES = 1000

# Named profiles installed with the package, copies of the repository's configs/ files (a test keeps them equal).
PROFILES_DIR = Path(__file__).parent / "configs"


def profile_names() -> list[str]:
    return sorted(path.stem for path in PROFILES_DIR.glob("*.yaml"))


def profile_path(name: str) -> Path:
    """The packaged profile ``name`` (``recommended``, ``demo``, ``spec``, ...: see :func:`profile_names`)."""
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise AffectkitError(f"Unknown profile {name!r}; the profiles are {', '.join(profile_names())}.")
    return path


def load_config(path: str | Path | None = None, data: DataConfig | None = None, profile: str | None = None) -> Config:
    """The defaults, updated from the data set's own settings file ``data``, then from the packaged ``profile`` (see
    :func:`profile_path`), then from the YAML file ``path``: the more specific source wins, key by key."""
    config = Config()
    if data is not None:
        config = _validate(_merge(config.model_dump(), _parse_mapping(data.text, data.where)), source=data.where)
    for source in (profile_path(profile) if profile else None, path):
        if source is not None:
            config = _validate(_merge(config.model_dump(), _read_mapping(Path(source))), source=str(source))
    return config


def parse_set_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["loss.focal_gamma=2", "precision=32"]`` -> ``{"loss.focal_gamma": 2, "precision": "32"}``: each value
    read as YAML, or kept as text where the key's declared type wants text (see :func:`coerce_value`)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise AffectkitError(f"--set expects KEY=VALUE, got {pair!r}.")
        key, raw = pair.split("=", 1)
        out[key.strip()] = coerce_value(key, raw)
    return out


def declared_type(key: str) -> Any | None:
    """The annotation of a dotted config key (``loss.focal_gamma``; ``class_map.NAME`` is a value of the mapping),
    or None for a key the config does not have."""
    annotation: Any = Config
    for part in _normalise_key(key).split("."):
        if get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and part in annotation.model_fields:
            annotation = annotation.model_fields[part].annotation
        else:
            return None
    return annotation


def coerce_value(key: str, raw: str) -> Any:
    """A command-line value for ``key``: YAML's reading when the key's type accepts it, else the text itself. YAML
    reads ``32`` as a number and ``no`` as false, but ``precision`` wants the string "32" and a class_map value a
    class name; an unknown key or a value no reading fits is left for the config's validation to report."""
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError:  # a regex such as ^[A-Z is no YAML, but is a fine group_pattern
        return raw
    annotation = declared_type(key)
    if annotation is None or isinstance(parsed, str):
        return parsed
    adapter = TypeAdapter(annotation)
    for candidate in (parsed, raw):
        try:
            adapter.validate_python(candidate)
        except ValidationError:
            continue
        return candidate
    return parsed


def type_name(annotation: Any) -> str:
    """A short spelling of a config annotation for listings: ``auto|32|bf16-mixed``, ``int|null``, ``float``."""
    origin = get_origin(annotation)
    if origin is Literal:
        return "|".join(str(v) for v in get_args(annotation))
    if origin in (Union, UnionType):
        return "|".join(type_name(a) for a in get_args(annotation))
    if origin is Annotated:
        return type_name(get_args(annotation)[0])
    if origin is dict:
        return "mapping"
    if annotation is NoneType:
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def config_reference() -> list[dict[str, Any]]:
    """Every config key, dotted where nested (``loss.focal_gamma``), with its type, default and description."""
    return list(_reference(Config, ""))


def _reference(model: type[BaseModel], prefix: str) -> Iterator[dict[str, Any]]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _reference(annotation, f"{prefix}{name}.")
        else:
            yield {"key": prefix + name, "type": type_name(annotation),
                   "default": field.get_default(call_default_factory=True), "description": field.description}
