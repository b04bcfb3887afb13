"""The fingerprint baseline: logistic regression from ECFP bits to the three labels, with
the missing labels masked out as in CLF training."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from belka.data.dataset import StoreStream, make_loader
from belka.objectives import unpack_bits


def fit_logreg(stream: StoreStream, bits: int, max_molecules: int, epochs: int, seed: int):
    """A logistic regression on up to `max_molecules` training molecules (read once)."""
    xs, ys, n = [], [], 0
    for batch in make_loader(stream, 0):
        xs.append(batch["ecfp"])
        ys.append(batch["labels"])
        n += len(batch["labels"])
        if n >= max_molecules:
            break
    x = torch.cat(xs)[:max_molecules]
    y = torch.cat(ys)[:max_molecules]
    torch.manual_seed(seed)
    model = nn.Linear(bits, y.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-5)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(4096):
            known = y[idx] >= 0
            if not known.any():
                continue
            logits = model(unpack_bits(x[idx], bits))
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits[known], y[idx][known].float()
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


@torch.inference_mode()
def logreg_scores(model: nn.Module, ecfp: np.ndarray, bits: int) -> np.ndarray:
    out = [
        torch.sigmoid(model(unpack_bits(torch.from_numpy(part), bits))).numpy()
        for part in np.array_split(ecfp, max(1, len(ecfp) // 8192))
    ]
    return np.concatenate(out) if out else np.zeros((0, 3), np.float32)
