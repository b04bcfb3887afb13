"""Shared parts: the temperature-conditioned head, conv blocks, the regressor base."""

from __future__ import annotations

import torch
from torch import nn

# The hyperparameters are the `model` config section: one dataclass, validated in one place.
from voxelflex.config.schema import ModelConfig


def conv_bn_act(
    cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv3d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class ResBlock3d(nn.Module):
    """Two 3x3x3 convs with a projected shortcut when shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        pad = dilation
        self.conv1 = conv_bn_act(cin, cout, 3, stride, dilation)
        self.conv2 = nn.Sequential(
            nn.Conv3d(cout, cout, 3, padding=pad, dilation=dilation, bias=False),
            nn.BatchNorm3d(cout),
        )
        self.short = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm3d(cout)
            )
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.short(x))


def global_pool(x: torch.Tensor) -> torch.Tensor:
    # mean pooling measures how packed the environment is; max pooling what is present at all
    return torch.cat([x.mean(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4))], dim=1)  # (R, 2C)


class TemperatureHead(nn.Module):
    """Features + scaled temperature -> positive RMSF. FiLM lets temperature rescale the
    features, since RMSF grows with temperature by a residue-dependent factor."""

    def __init__(self, in_features: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_features, hidden), nn.SiLU(), nn.Dropout(dropout))
        self.film = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.out = nn.Sequential(nn.Linear(hidden + 1, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        h = self.proj(feats)  # (B, H)
        gamma, beta = self.film(temperature).chunk(2, dim=1)  # (B, H) each
        h = h * (1 + gamma) + beta
        return nn.functional.softplus(self.out(torch.cat([h, temperature], dim=1))).squeeze(1)


class RMSFRegressor(nn.Module):
    """Encoder of voxel grids + temperature head.

    forward(voxels (R, C, 21, 21, 21), temperature (B, 1), voxel_index (B,) | None) -> (B,).
    With voxel_index, each of the R grids is encoded once and shared by its samples; without
    it R == B (the plain `(B, 5, 21, 21, 21) + (B, 1) -> (B,)` contract).
    """

    encoder: nn.Module
    num_features: int

    def __init__(self, hp: ModelConfig) -> None:
        super().__init__()
        self.hparams = hp

    def init_head(self) -> None:
        self.head = TemperatureHead(
            self.num_features, self.hparams.head_hidden, self.hparams.dropout_rate
        )

    def encode(self, voxels: torch.Tensor) -> torch.Tensor:
        return global_pool(self.encoder(voxels))  # (R, F)

    def forward(
        self,
        voxels: torch.Tensor,
        temperature: torch.Tensor,
        voxel_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        feats = self.encode(voxels)
        if voxel_index is not None:
            feats = feats[voxel_index]  # (B, F)
        return self.head(feats, temperature)  # (B,)


def widths(hp: ModelConfig, n: int) -> list[int]:
    return [round(hp.base_filters * hp.channel_growth_rate ** (i + 1)) for i in range(n)]
