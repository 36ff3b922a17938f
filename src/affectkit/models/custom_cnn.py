"""The spec's custom CNN feature extractor, with an optional attention block after each stage (squeeze-excite,
CBAM), or self-attention over the positions of its last stage."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)


class CBAM(nn.Module):
    """Channel attention (shared MLP over avg- and max-pooled maps) then spatial attention (7x7 conv)."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
        )
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))
        x = x * channel
        spatial = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(spatial))


class SelfAttention(nn.Module):
    """Multi-head self-attention over a feature map's positions, as BoTNet puts it in a CNN's last stage: every
    position attends to every other, the whole-face context (a raised brow with a pressed mouth) that stacked 3x3
    convolutions take several layers to relate. Positions are told apart by a depthwise 3x3 convolution added to the
    map before attending (CPVT's conditional encoding: any input size, no table to resize). The block adds its output
    to the map scaled by a learnt factor that starts at 0 (ReZero), so a network starts as the plain CNN."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.heads = heads if channels % heads == 0 else 1
        self.head_channels = channels // self.heads
        self.position = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.project = nn.Linear(channels, channels)
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm((x + self.position(x)).flatten(2).transpose(1, 2))  # (n, positions, channels)
        heads = self.qkv(tokens).unflatten(-1, (3, self.heads, self.head_channels)).permute(2, 0, 3, 1, 4)
        q, k, v = heads.unbind(0)  # each (n, heads, positions, head_channels)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return x + self.scale * self.project(attended).transpose(1, 2).reshape_as(x)


ATTENTION_BLOCKS = {"se": SqueezeExcite, "cbam": CBAM, "self": SelfAttention}


def _attention(kind: str, channels: int) -> nn.Module:
    return ATTENTION_BLOCKS[kind](channels) if kind != "none" else nn.Identity()


def _stage(c_in: int, c_out: int, pool: bool, attention: str, convs: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True)]
    layers.append(_attention(attention, c_out))
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


SPEC_WIDTHS = (32, 64, 128, 256)


class CustomCNN(nn.Module):
    """The spec's Conv32-BN-ReLU-MaxPool, Conv64-..., Conv128-..., Conv256-BN-ReLU, global average pool -> 256
    features; ``widths`` (one stage each, every stage but the last halving the resolution) and ``convs_per_stage``
    make other members of the family, which ``affectkit tune --architecture`` searches. ``attention``: none, se or
    cbam after each stage, or self (:class:`SelfAttention`) after the last."""

    def __init__(self, attention: str = "none", widths: tuple[int, ...] | list[int] = SPEC_WIDTHS,
                 convs_per_stage: int = 1):
        super().__init__()
        channels = [3, *widths]
        last = len(widths) - 1
        # Self-attention in the last stage alone: its positions are few (12 x 12 at 96 px), and attention costs
        # the square of their number.
        per_stage = [attention if attention != "self" or i == last else "none" for i in range(len(widths))]
        self.features = nn.Sequential(*(
            _stage(channels[i], channels[i + 1], i < last, per_stage[i], convs_per_stage) for i in range(len(widths))))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)
