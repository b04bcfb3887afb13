"""dilated_resnet3d: residual blocks with growing dilation widen the view without pooling."""

from __future__ import annotations

from typing import Any

from torch import nn

from voxelflex.config.schema import ModelConfig
from voxelflex.models.base import ResBlock3d, RMSFRegressor, conv_bn_act, widths
from voxelflex.models.registry import register_model

DILATION_CYCLE = (1, 2, 4)


class DilatedResNet3D(RMSFRegressor):
    def __init__(self, hp: ModelConfig) -> None:
        super().__init__(hp)
        w = widths(hp, hp.num_residual_blocks)
        blocks: list[nn.Module] = [conv_bn_act(hp.input_channels, hp.base_filters, stride=2)]
        cin = hp.base_filters  # (R, b, 11, 11, 11)
        for i, cout in enumerate(w):
            blocks.append(ResBlock3d(cin, cout, dilation=DILATION_CYCLE[i % len(DILATION_CYCLE)]))
            cin = cout
        self.encoder = nn.Sequential(*blocks)  # (R, w[-1], 11, 11, 11)
        self.num_features = 2 * cin
        self.init_head()


@register_model("dilated_resnet3d")
def dilated_resnet3d(**kwargs: Any) -> DilatedResNet3D:
    return DilatedResNet3D(ModelConfig(architecture="dilated_resnet3d", **kwargs))
