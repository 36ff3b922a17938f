"""The spec's custom CNN feature extractor, with an optional attention block after each stage."""

from __future__ import annotations

import torch
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


def _attention(kind: str, channels: int) -> nn.Module:
    return {"se": SqueezeExcite, "cbam": CBAM}[kind](channels) if kind != "none" else nn.Identity()


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
    make other members of the family, which ``affectkit tune --architecture`` searches."""

    def __init__(self, attention: str = "none", widths: tuple[int, ...] | list[int] = SPEC_WIDTHS,
                 convs_per_stage: int = 1):
        super().__init__()
        channels = [3, *widths]
        self.features = nn.Sequential(*(
            _stage(channels[i], channels[i + 1], i < len(widths) - 1, attention, convs_per_stage)
            for i in range(len(widths))))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)
