"""Whether freezing MobileNetV2's first stages in phase 2 buys the recipe 112-px input at 96-px cost. Measured and
rejected (results/recipe_input_size.md): the step gets that fast, the accuracy falls well below 96 px's.

Speed: images/s of one phase-2 training step (fp32 or the product's precision, batch 32, channels-last, AdamW) of the
recipe's MobileNetV2 with every layer training, and with the stem and the first N stages frozen, at the given sizes;
also ``torch.compile``'s step. Accuracy (``--accuracy``): the recipe's MobileNetV2 on the ablation proxy at 112 px
with the stem and first N stages frozen in phase 2, to set beside the input-size pairs of
``results/recipe_input_size.md``. The freezing is patched in here; affectkit has no setting for it.

    python bench/frozen_stages.py --threads 2                                # speed, about 5 minutes
    python bench/frozen_stages.py --threads 2 --accuracy --label-noise 0.3 --n 1200 --seed 0

The last line of the speed part is machine-readable.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from affectkit.config import Config
from affectkit.models import build_model
from affectkit.models.factory import AffectModel
from affectkit.training.losses import multitask_loss
from ablations import Settings, demo_data, quiet_lightning, recipe_config, run_option
from threads import add_threads_option, use_threads


def freeze_early_stages(model: AffectModel, stages: int) -> None:
    """The stem and the first ``stages`` stages of a timm MobileNet/EfficientNet backbone stop training."""
    backbone = model.backbone
    for module in (backbone.conv_stem, backbone.bn1, *backbone.blocks[:stages]):
        module.requires_grad_(False)


def step_speed(size: int, stages: int, compiled: bool, steps: int) -> float:
    """Images/s of a phase-2 step at ``size`` px with ``stages`` early stages frozen."""
    config = Config(img_size=size, use_light_models=True)
    model = build_model("resnet50", config).to(memory_format=torch.channels_last).train()
    freeze_early_stages(model, stages)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    forward = torch.compile(model) if compiled else model
    images = torch.randn(32, 3, size, size).to(memory_format=torch.channels_last)
    labels, va = torch.randint(0, 8, (32,)), torch.zeros(32, 2)

    def step() -> None:
        logits, valence, arousal = forward(images)
        loss, _ = multitask_loss(logits, valence, arousal, labels, va, config.loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):  # kernels chosen, and compiled
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 32 * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", type=int, default=3, help="early stages frozen (MobileNetV2 has 7)")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per measurement")
    parser.add_argument("--accuracy", action="store_true", help="train on the proxy instead of timing steps")
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-noise", type=float, default=0.0)
    parser.add_argument("--img-size", type=int, default=112, help="with --accuracy: the input size")
    add_threads_option(parser)
    args = parser.parse_args()
    use_threads(args)
    if not args.accuracy:
        speeds = {}
        for size, stages, compiled in ((96, 0, False), (112, 0, False), (112, 2, False), (112, args.stages, False),
                                       (112, 0, True)):
            name = f"{size}px, {stages} stages frozen" + (", compiled" if compiled else "")
            speeds[name] = step_speed(size, stages, compiled, args.steps)
            print(f"{name:34s} {speeds[name]:6.1f} images/s", flush=True)
        print(json.dumps({"threads": torch.get_num_threads(), "images_per_s": speeds}))
        return
    quiet_lightning()
    settings = Settings(args.n, 112, 0, args.seed, args.label_noise)
    with tempfile.TemporaryDirectory(prefix="affectkit-frozen-") as tmp:
        root = Path(tmp)
        config = recipe_config(settings, root / "cache", quick=False).override(img_size=args.img_size)
        data = demo_data(root, settings, imbalance=False, config=config)
        set_trainable = AffectModel.set_backbone_trainable

        def partly_trainable(model: AffectModel, trainable: bool, freeze_batchnorm: bool = False) -> None:
            set_trainable(model, trainable, freeze_batchnorm)
            if trainable and model.spec.key == "resnet50":
                freeze_early_stages(model, args.stages)

        with mock.patch.object(AffectModel, "set_backbone_trainable", partly_trainable):
            row = run_option("recipe", data, root / "run", config, model_name="resnet50", changes={})
    print(f"{args.img_size} px, stem + {args.stages} stages frozen in phase 2, seed {args.seed}, label noise "
          f"{args.label_noise:.0%}: accuracy {row['accuracy']:.3f}, macro-F1 {row['macro-F1']:.3f}, "
          f"training {row['training time (s)']:.0f} s")


if __name__ == "__main__":
    main()
