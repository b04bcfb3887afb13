"""An MLP over the pair features [a, b, |a-b|, a*b] of two frozen protein embeddings."""

from __future__ import annotations

import torch
from torch import nn

from esm2pairs.models.registry import register_model


class PairMLP(nn.Module):
    def __init__(self, dim: int, hidden_dims: list[int], dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.LayerNorm(4 * dim)]
        width = 4 * dim
        for h in hidden_dims:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # a, b: (B, D) -> logits (B,)
        x = torch.cat([a, b, (a - b).abs(), a * b], dim=1)  # (B, 4D)
        return self.net(x).squeeze(1)


@register_model("pair_mlp")
def pair_mlp(dim: int, hidden_dims: list[int], dropout: float = 0.2) -> PairMLP:
    return PairMLP(dim, hidden_dims, dropout)
