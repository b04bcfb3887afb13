"""The three training objectives on one batch: the model's input and its loss."""

from __future__ import annotations

import torch
from torch import nn

from belka.tokenizer import MASK_ID, PAD_ID

_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)  # np.packbits is most significant first


def unpack_bits(packed: torch.Tensor, bits: int) -> torch.Tensor:
    # (B, bits/8) uint8 on the device -> (B, bits) float: 8x less to ship than the bits
    shifts = _SHIFTS.to(packed.device)
    return ((packed.unsqueeze(-1) >> shifts) & 1).flatten(1)[:, :bits].float()


def mask_tokens(
    tokens: torch.Tensor, rate: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs with `rate` of the real tokens replaced by MASK, the masked positions)."""
    draw = torch.rand(tokens.shape, device=tokens.device, generator=generator)
    masked = (draw < rate) & (tokens != PAD_ID)
    return tokens.masked_fill(masked, MASK_ID), masked


def loss_and_output(
    model: nn.Module,
    mode: str,
    batch: dict[str, torch.Tensor],
    *,
    masking_rate: float,
    ecfp_bits: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The batch's mean loss, and for `clf` the logits (B, 3)."""
    tokens = batch["tokens"].long()
    # columns past the batch's longest molecule are all padding: drop them
    longest = int((tokens != PAD_ID).sum(1).max())
    tokens = tokens[:, : max(longest, 1)]
    if mode == "mlm":
        inputs, masked = mask_tokens(tokens, masking_rate, generator)
        logits = model(inputs)  # (B, L, V)
        if not masked.any():
            return logits.sum() * 0.0, None
        return nn.functional.cross_entropy(logits[masked].float(), tokens[masked]), None
    logits = model(tokens).float()
    if mode == "fps":
        target = unpack_bits(batch["ecfp"], ecfp_bits)
        return nn.functional.binary_cross_entropy_with_logits(logits, target), None
    labels = batch["labels"]
    known = labels >= 0
    if not known.any():
        return logits.sum() * 0.0, logits
    loss = nn.functional.binary_cross_entropy_with_logits(logits[known], labels[known].float())
    return loss, logits
