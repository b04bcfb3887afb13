"""The tasks the model is trained on: accuracy (MSE on the final moments) and physics
(conservation of total numbers and fluxes, of each flavor's lepton number, and causality
|F| <= N), each a scalar loss over a batch, in the loader's scaled units.

The conserved quantities are linear in the 24 moments, so all eleven come from one matmul of
the change (prediction - initial) with a fixed (24, 11) matrix: a handful of tensor ops per
step, where a small model's step is bound by the number of ops, not their arithmetic."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from rheidae.config.schema import ConstraintsConfig, LossConfig
from rheidae.moments import conserved

# `moments.conserved` order: totals (2), lepton numbers (3), fluxes (6); the loss takes the
# totals and fluxes first, then the lepton numbers
_NUMBER_COLS = [0, 1, 5, 6, 7, 8, 9, 10]
_LEPTON_COLS = [2, 3, 4]
N_NUMBER = len(_NUMBER_COLS)


@lru_cache(maxsize=8)
def _conserved_matrix(device: str, dtype: torch.dtype) -> torch.Tensor:
    """(24, 11): flat moments @ it = number totals and fluxes (8), then lepton numbers (3);
    built by applying `moments.conserved` to the 24 unit vectors."""
    unit = np.eye(24).reshape(24, 4, 2, 3)
    c = conserved(unit)[:, _NUMBER_COLS + _LEPTON_COLS]
    return torch.tensor(c, dtype=dtype, device=device)


def conserved_change(pred: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """(B, 11): how far each conserved quantity moved (8 number/flux, then 3 lepton)."""
    return (pred - initial) @ _conserved_matrix(str(pred.device), pred.dtype)


def causality_excess(f: torch.Tensor) -> torch.Tensor:
    f4 = f.reshape(-1, 4, 6)
    return torch.relu(torch.linalg.vector_norm(f4[:, :3], dim=1) - f4[:, 3])  # (B, 6)


def task_names(c: ConstraintsConfig) -> list[str]:
    return ["accuracy"] + [n for n in ("number", "lepton", "causality") if getattr(c, n)]


def task_losses(
    pred: torch.Tensor,
    target: torch.Tensor,
    initial: torch.Tensor,
    constraints: ConstraintsConfig,
    scales: LossConfig,
) -> torch.Tensor:
    """The active tasks' losses (T,), in `task_names` order."""
    out = [torch.mean((pred - target) ** 2)]
    if constraints.number or constraints.lepton:
        sq = conserved_change(pred, initial) ** 2
        if constraints.number:
            out.append(sq[:, :N_NUMBER].mean() / scales.number_scale)
        if constraints.lepton:
            out.append(sq[:, N_NUMBER:].mean() / scales.lepton_scale)
    if constraints.causality:
        out.append(torch.mean(causality_excess(pred) ** 2) / scales.causality_scale)
    return torch.stack(out)
