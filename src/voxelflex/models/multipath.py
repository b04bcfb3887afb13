"""multipath_rmsf_net: parallel dilated paths see near and far neighbours at one scale."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from voxelflex.config.schema import ModelConfig
from voxelflex.models.base import ResBlock3d, RMSFRegressor, conv_bn_act, widths
from voxelflex.models.registry import register_model

DILATIONS = (1, 2, 3)


class _MultiPath(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        # stride 2: (21^3 -> 11^3); each path a different reach, same cost
        self.paths = nn.ModuleList(
            nn.Sequential(conv_bn_act(cin, cin, 3, 2, d), conv_bn_act(cin, cin, 3, 1, 1))
            for d in DILATIONS
        )
        self.fuse = conv_bn_act(cin * len(DILATIONS), cout, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([p(x) for p in self.paths], dim=1))  # (R, cout, 11, 11, 11)


class MultipathRMSFNet(RMSFRegressor):
    def __init__(self, hp: ModelConfig) -> None:
        super().__init__(hp)
        w = widths(hp, hp.num_residual_blocks + 1)
        blocks: list[nn.Module] = [
            conv_bn_act(hp.input_channels, hp.base_filters),  # (R, b, 21, 21, 21)
            _MultiPath(hp.base_filters, w[0]),  # (R, w0, 11, 11, 11)
        ]
        for i in range(hp.num_residual_blocks):
            blocks.append(ResBlock3d(w[i], w[i + 1], stride=2 if i == 0 else 1))  # (R, wi, 6, 6, 6)
        self.encoder = nn.Sequential(*blocks)
        self.num_features = 2 * w[-1]
        self.init_head()


@register_model("multipath_rmsf_net")
def multipath_rmsf_net(**kwargs: Any) -> MultipathRMSFNet:
    return MultipathRMSFNet(ModelConfig(architecture="multipath_rmsf_net", **kwargs))
