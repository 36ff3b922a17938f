"""Which accelerator and numeric precision a run uses, from the config and what the machine can do natively."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

from affectkit.config import Config
from affectkit.errors import AffectkitError


@cache  # the CPU's flags do not change while we run
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: oneDNN then runs bf16 matrix work natively, and training there is markedly faster in bf16
    (bench/results/implementation_choices.md). Elsewhere bf16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def _has_grouped_convolutions(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in model.modules())


def check_hardware(config: Config) -> None:
    """Refuse, before any data is read, an accelerator or a device count this machine does not have: Lightning
    would only say so once the Trainer is built."""
    if config.accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise AffectkitError(f"accelerator: {config.accelerator}, but PyTorch sees no CUDA GPU on this machine: "
                                 "set accelerator to auto (the GPU where there is one) or cpu.")
        wanted = config.devices if isinstance(config.devices, int) else None
        if wanted is not None and wanted > torch.cuda.device_count():
            raise AffectkitError(f"devices: {wanted}, but this machine has {torch.cuda.device_count()} CUDA GPU(s).")
    if config.accelerator == "mps" and not torch.backends.mps.is_available():
        raise AffectkitError("accelerator: mps, but PyTorch sees no Apple GPU (MPS) on this machine: set accelerator "
                             "to auto or cpu.")


def resolve_accelerator(config: Config, model: torch.nn.Module | None = None) -> tuple[str, str]:
    """(accelerator, precision): ``auto`` precision is bf16 autocast where the hardware runs it natively and it wins:
    CUDA with bf16; CPUs with AVX512-BF16/AMX, except for depthwise/grouped-convolution models, whose training is
    slower there in bf16 (bench/results/implementation_choices.md). fp32 elsewhere."""
    check_hardware(config)
    accelerator = config.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    precision = config.precision
    if precision == "auto":
        if accelerator in ("gpu", "cuda"):
            native = torch.cuda.is_bf16_supported()
        else:
            native = accelerator == "cpu" and cpu_has_native_bf16() and not (
                model is not None and _has_grouped_convolutions(model))
        precision = "bf16-mixed" if native else "32-true"
    return accelerator, precision


def uses_bf16(config: Config, model: torch.nn.Module | None = None) -> bool:
    return resolve_accelerator(config, model)[1] == "bf16-mixed"


def training_device(config: Config, model: torch.nn.Module | None = None) -> torch.device:
    """The device a run's own forward passes outside the Trainer (phase 1's stored features) should use: the GPU
    where the run trains on one."""
    accelerator = resolve_accelerator(config, model)[0]
    return torch.device("cuda" if accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu")
