"""The Belka encoder: token + position embeddings, pre-norm transformer layers, and one
head per mode (MLM: token logits; FPS: ECFP bit logits; CLF: three binding logits)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from belka.tokenizer import PAD_ID


@dataclass(frozen=True)
class BelkaSpec:
    vocab_size: int
    max_length: int = 128
    depth: int = 32
    num_heads: int = 8
    num_layers: int = 4
    ff_dim: int = 128
    dropout_rate: float = 0.1
    activation: str = "gelu"
    mode: str = "clf"
    ecfp_bits: int = 1024
    n_proteins: int = 3

    def to_dict(self) -> dict:
        return asdict(self)

    def encoder_shape(self) -> dict:
        """What two models must share for one's encoder weights to load into the other."""
        keys = ("vocab_size", "max_length", "depth", "num_heads", "num_layers", "ff_dim")
        return {k: getattr(self, k) for k in keys}


class SelfAttention(nn.Module):
    def __init__(self, depth: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(depth, 3 * depth)
        self.out = nn.Linear(depth, depth)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # x (B, L, D), keep (B, L) bool: real tokens
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # fused attention (no dropout on the attention weights): with 8 heads of width 4
        # the unfused path spends its time writing (B, H, L, L) tensors
        o = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        return self.out(o.transpose(1, 2).reshape(b, n, d))  # (B, L, D)


class EncoderLayer(nn.Module):
    """Pre-norm: x + attention(norm(x)), then x + feed-forward(norm(x))."""

    def __init__(self, spec: BelkaSpec):
        super().__init__()
        act = nn.GELU() if spec.activation == "gelu" else nn.ReLU()
        self.norm1 = nn.LayerNorm(spec.depth)
        self.attention = SelfAttention(spec.depth, spec.num_heads)
        self.norm2 = nn.LayerNorm(spec.depth)
        self.feed_forward = nn.Sequential(
            nn.Linear(spec.depth, spec.ff_dim), act, nn.Linear(spec.ff_dim, spec.depth)
        )
        self.dropout = nn.Dropout(spec.dropout_rate)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm1(x), keep))
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class Encoder(nn.Module):
    def __init__(self, spec: BelkaSpec):
        super().__init__()
        self.tokens = nn.Embedding(spec.vocab_size, spec.depth, padding_idx=PAD_ID)
        self.positions = nn.Embedding(spec.max_length, spec.depth)
        self.layers = nn.ModuleList(EncoderLayer(spec) for _ in range(spec.num_layers))
        self.norm = nn.LayerNorm(spec.depth)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # tokens (B, L) long -> hidden (B, L, D), padding (B, L) bool
        padding = tokens == PAD_ID
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        h = self.tokens(tokens) + self.positions(pos)[None]
        for layer in self.layers:
            h = layer(h, ~padding)
        return self.norm(h), padding


class Belka(nn.Module):
    def __init__(self, spec: BelkaSpec):
        super().__init__()
        self.spec = spec
        self.encoder = Encoder(spec)
        out = {"mlm": spec.vocab_size, "fps": spec.ecfp_bits, "clf": spec.n_proteins}[spec.mode]
        self.head = nn.Linear(spec.depth, out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, padding = self.encoder(tokens)  # (B, L, D)
        if self.spec.mode == "mlm":
            return self.head(h)  # (B, L, V)
        keep = (~padding).unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1)  # (B, D)
        return self.head(pooled)  # (B, bits) or (B, 3)


MODELS = {"belka": Belka}


def create_model(name: str, spec: BelkaSpec) -> nn.Module:
    return MODELS[name](spec)
