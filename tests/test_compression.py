import pytest
import torch

from affectkit.config import Config
from affectkit.models import build_model
from affectkit.models.compression import apply_pruning, make_permanent, prune_model, sparsity


@pytest.mark.parametrize("amount", [0.5, 0.8])
def test_pruning_reaches_the_requested_sparsity_and_the_model_still_runs(amount):
    torch.manual_seed(0)
    model = build_model("custom_cnn", Config(img_size=32))
    assert sparsity(model) < 0.01
    pruned = prune_model(model, amount)
    assert sparsity(pruned) == pytest.approx(amount, abs=0.01)
    assert not any(name.endswith(("_orig", "_mask")) for name in pruned.state_dict())  # permanent, usual keys
    with torch.no_grad():
        logits, valence, arousal = pruned.eval()(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 8) and valence.shape == (3,) and arousal.shape == (3,)
    assert torch.isfinite(logits).all()


def test_masks_keep_pruned_weights_at_zero_through_training():
    torch.manual_seed(0)
    model = apply_pruning(build_model("custom_cnn", Config(img_size=32)), 0.6)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        logits, valence, arousal = model.train()(torch.randn(4, 3, 32, 32))
        (logits.square().mean() + valence.mean() + arousal.mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert sparsity(make_permanent(model)) == pytest.approx(0.6, abs=0.01)
