"""Typed run configuration with the spec's defaults, loaded from YAML and overridable from the command line.

Every knob of the spec's ``Config`` lives here under a snake_case name (``IMG_SIZE`` -> ``img_size``); the
upper-case spellings are accepted in YAML files too, so a config copied from the original notebook works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from affectkit.errors import AffectkitError

CLASS_NAMES: tuple[str, ...] = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
NUM_CLASSES = len(CLASS_NAMES)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentationConfig(_Strict):
    """The spec's ``AugmentationParams`` plus the opt-in improvements of its "future work" list."""

    rotation_range: float = 20.0
    width_shift_range: float = 0.2
    height_shift_range: float = 0.2
    horizontal_flip: bool = True
    zoom_range: float = 0.2
    shear_range: float = 0.1
    fill_mode: Literal["nearest", "constant", "reflect", "wrap"] = "nearest"
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    rand_augment: str | None = None  # a timm RandAugment config string, e.g. "rand-m9-mstd0.5"
    trivial_augment: bool = False


class LossConfig(_Strict):
    """Total = expression_weight * CE + valence_weight * L(val) + arousal_weight * L(aro)."""

    expression_weight: float = 1.0
    valence_weight: float = 0.5
    arousal_weight: float = 0.5
    regression: Literal["mse", "ccc"] = "mse"
    focal_gamma: float | None = None
    class_weighting: bool = False
    label_smoothing: float = 0.0


class Config(_Strict):
    img_size: int = Field(224, ge=16, le=1024)
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(30, ge=0)
    fine_tune_epochs: int = Field(10, ge=0)
    validation_split: float = Field(0.15, gt=0, lt=1)
    test_split: float = Field(0.15, gt=0, lt=1)
    learning_rate: float = Field(1e-3, gt=0)
    fine_tune_lr: float = Field(1e-4, gt=0)
    max_samples: int | None = Field(None, ge=8)
    use_light_models: bool = False
    streaming_mode: bool = True
    seed: int = 42

    early_stopping_patience: int = Field(10, ge=1)
    lr_reduce_factor: float = Field(0.5, gt=0, lt=1)
    lr_reduce_patience: int = Field(5, ge=0)
    min_lr: float = 1e-7
    # "plateau" is the spec's ReduceLROnPlateau; "cosine" anneals each phase to min_lr over its epoch budget, which
    # converges in a fixed short budget (the demo) where plateau halvings come too late.
    lr_schedule: Literal["plateau", "cosine"] = "plateau"
    weight_decay: float = 0.0
    # DataLoader worker processes; "auto" picks by hardware (see ``loader_workers``).
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    weighted_sampler: bool = False

    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    loss: LossConfig = Field(default_factory=LossConfig)

    # Model options.
    dropout_scale: float = Field(1.0, ge=0, le=1.9)  # multiplies the spec's 0.5 / 0.3 dropout rates
    head_width: int = Field(512, ge=8)  # first dense layer of the head (the spec's 512; second is half)
    attention: Literal["none", "se", "cbam"] = "none"  # custom CNN only

    # Speed.
    channels_last: bool = True
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = "auto"
    compile: bool = False
    phase1_feature_cache: bool = True
    phase1_views: int = Field(4, ge=0)
    devices: int | str = 1
    num_nodes: int = 1
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"

    cache_dir: str | None = None

    @field_validator("test_split")
    @classmethod
    def _splits_leave_training_data(cls, v: float, info: Any) -> float:
        val = info.data.get("validation_split", 0.15)
        if v + val >= 0.9:
            raise ValueError(f"validation_split + test_split = {v + val:.2f} leaves too little training data")
        return v

    # -- I/O -------------------------------------------------------------------------------------------------

    def to_yaml(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
        return path

    def override(self, **changes: Any) -> Config:
        """A copy with dotted-key changes applied (``{"loss.focal_gamma": 2}``); ``None`` values are skipped."""
        data = self.model_dump()
        for key, value in changes.items():
            if value is None:
                continue
            _set_dotted(data, _normalise_key(key), value)
        return _validate(data, source="command-line options")


def _normalise_key(key: str) -> str:
    return key.strip().lower().replace("-", "_")


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
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise AffectkitError(f"Invalid configuration in {source}: {problems}") from None


DATA_CONFIG_NAME = "affectkit.yaml"


def data_config_file(data: str | Path | None) -> Path | None:
    """The settings file a data folder may carry (``DATA/affectkit.yaml``, written by ``make-demo-data``), if any."""
    if data is None:
        return None
    path = Path(data) / DATA_CONFIG_NAME
    return path if path.is_file() else None


def _read_mapping(path: Path) -> dict:
    if not path.is_file():
        raise AffectkitError(f"Config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AffectkitError(f"Config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise AffectkitError(f"Config file {path} must hold a mapping of option names to values.")
    return _lower_keys(data)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path | None = None, data: str | Path | None = None) -> Config:
    """The defaults, updated from the data folder's own settings file (see :func:`data_config_file`) and then from
    the YAML file ``path``: the more specific source wins, key by key."""
    config = Config()
    for source in (data_config_file(data), path):
        if source is not None:
            config = _validate(_merge(config.model_dump(), _read_mapping(Path(source))), source=str(source))
    return config


def parse_set_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["loss.focal_gamma=2", "augmentation.mixup_alpha=0.2"]`` -> dict with YAML-typed values."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise AffectkitError(f"--set expects KEY=VALUE, got {pair!r}.")
        key, raw = pair.split("=", 1)
        out[key] = yaml.safe_load(raw)
    return out
