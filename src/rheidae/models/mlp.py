"""An MLP from the initial moments and the Box3D prediction (48) to 24 numbers: the final
moments, or their difference from Box3D (`predict_residual`)."""

from __future__ import annotations

import torch
from torch import nn


class ResidualMLP(nn.Module):
    def __init__(self, hidden_dims: list[int], dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 48
        for h in hidden_dims:
            layers += [nn.Linear(width, h), nn.SiLU(), nn.Dropout(dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 24)
        nn.init.zeros_(self.head.weight)  # starts as "no change" (Box3D itself, residually)
        nn.init.zeros_(self.head.bias)

    @property
    def shared(self) -> torch.Tensor:
        """The last shared weights (GradNorm measures task gradients here)."""
        layer = self.body[-3]
        assert isinstance(layer, nn.Linear)
        return layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # (B, 48) -> (B, 24)
