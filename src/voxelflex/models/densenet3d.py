"""densenet3d_regression: dense blocks reuse every earlier feature map."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from voxelflex.config.schema import ModelConfig
from voxelflex.models.base import RMSFRegressor, conv_bn_act
from voxelflex.models.registry import register_model


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm3d(cin),
            nn.ReLU(inplace=True),
            nn.Conv3d(cin, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)  # (R, cin + growth, ...)


def _transition(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm3d(cin),
        nn.ReLU(inplace=True),
        nn.Conv3d(cin, cout, 1, bias=False),
        nn.AvgPool3d(2, ceil_mode=True),  # 21 -> 11 -> 6
    )


class DenseNet3DRegression(RMSFRegressor):
    def __init__(self, hp: ModelConfig) -> None:
        super().__init__(hp)
        layers: list[nn.Module] = [conv_bn_act(hp.input_channels, hp.base_filters)]
        channels = hp.base_filters
        for n_layers in hp.densenet_block_layers:
            for _ in range(n_layers):
                layers.append(_DenseLayer(channels, hp.densenet_growth_rate))
                channels += hp.densenet_growth_rate
            out = max(hp.base_filters, channels // 2)
            layers.append(_transition(channels, out))
            channels = out
        layers += [nn.BatchNorm3d(channels), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*layers)
        self.num_features = 2 * channels
        self.init_head()


@register_model("densenet3d_regression")
def densenet3d_regression(**kwargs: Any) -> DenseNet3DRegression:
    return DenseNet3DRegression(ModelConfig(architecture="densenet3d_regression", **kwargs))
