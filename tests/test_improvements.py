"""The spec's future improvements that live in the training loop: MixUp/CutMix targets and any timm backbone."""

import numpy as np
import pytest
import torch

from affectkit.config import AugmentationConfig
from affectkit.data.datamodule import prepare_data
from affectkit.training.mixing import mix_batch
from affectkit.training.trainer import train_model


@pytest.mark.parametrize("aug", [AugmentationConfig(mixup_alpha=0.4), AugmentationConfig(cutmix_alpha=1.0)])
def test_mixed_targets_sum_to_one_and_valence_arousal_follow_the_same_mix(aug):
    rng = np.random.default_rng(0)
    images = torch.randn(8, 3, 32, 32)
    labels = torch.arange(8)  # one image per class: a soft target names both images of its mix
    va = torch.rand(8, 2) * 2 - 1
    for _ in range(5):
        mixed, soft, mixed_va = mix_batch(images, labels, va, aug, rng)
        assert mixed.shape == images.shape and soft.shape == (8, 8)
        assert torch.allclose(soft.sum(1), torch.ones(8))
        for i in range(8):
            own = soft[i, i]
            others = soft[i].clone()
            others[i] = 0
            partner = int(others.argmax()) if others.sum() > 0 else i
            expected = own * va[i] + (1 - own) * va[partner]
            assert torch.allclose(mixed_va[i], expected, atol=1e-5)


@pytest.mark.parametrize("aug", [AugmentationConfig(mixup_alpha=0.4), AugmentationConfig(cutmix_alpha=1.0)])
def test_stored_features_mix_by_interpolation_in_step_with_their_targets(aug):
    """Phase 1's pooled features [N, D] have no patches to cut: under CutMix as under MixUp they interpolate."""
    rng = np.random.default_rng(0)
    features, labels, va = torch.randn(8, 16), torch.arange(8), torch.rand(8, 2) * 2 - 1
    mixed_any = False
    for _ in range(5):
        mixed, soft, mixed_va = mix_batch(features, labels, va, aug, rng)
        own = soft.diagonal()
        partner = (soft - torch.diag(own)).argmax(1)
        partner = torch.where(own < 1, partner, torch.arange(8))
        torch.testing.assert_close(mixed, own[:, None] * features + (1 - own[:, None]) * features[partner])
        torch.testing.assert_close(mixed_va, own[:, None] * va + (1 - own[:, None]) * va[partner])
        mixed_any |= bool((own < 0.99).any())
    assert mixed_any


def test_any_timm_backbone_trains_with_the_same_heads(demo_dir, tmp_path, tiny_config):
    config = tiny_config.override(epochs=1, fine_tune_epochs=1, max_samples=48)
    data = prepare_data(demo_dir, config, splits_path=tmp_path / "splits.csv", progress=False)
    result = train_model("timm:mobilenetv3_large_100", data, tmp_path, config, quiet=True)
    assert result.name == "timm-mobilenetv3_large_100"
    assert list(result.history["phase"]) == [1, 2]
    assert np.isfinite(result.history["train_loss"]).all()
