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


def _stage(c_in: int, c_out: int, pool: bool, attention: str) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        _attention(attention, c_out),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class CustomCNN(nn.Module):
    """Conv32-BN-ReLU-MaxPool, Conv64-..., Conv128-..., Conv256-BN-ReLU, global average pool -> 256 features."""

    def __init__(self, attention: str = "none"):
        super().__init__()
        self.features = nn.Sequential(
            _stage(3, 32, True, attention),
            _stage(32, 64, True, attention),
            _stage(64, 128, True, attention),
            _stage(128, 256, False, attention),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)
