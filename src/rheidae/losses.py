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
    # the norm over the last, contiguous axis: over the middle one torch's CPU kernel takes
    # 80 us for a batch of 128, contiguous 16 us with the copy
    flux = f4[:, :3].transpose(1, 2).contiguous()  # (B, 6, 3)
    return torch.relu(torch.linalg.vector_norm(flux, dim=2) - f4[:, 3])  # (B, 6)


def task_names(c: ConstraintsConfig) -> list[str]:
    return ["accuracy"] + [n for n in ("number", "lepton", "causality") if getattr(c, n)]


@lru_cache(maxsize=8)
def _loss_matrix(
    constraints: ConstraintsConfig, scales: LossConfig, device: str, dtype: torch.dtype
) -> torch.Tensor:
    """(columns, T): the per-column mean squares of `task_losses`' residuals -> each active
    task's loss (a mean over its columns, over its scale)."""
    blocks = [("accuracy", 24, 1.0)]
    if constraints.number or constraints.lepton:
        blocks += [("number", N_NUMBER, scales.number_scale)]
        blocks += [("lepton", len(_LEPTON_COLS), scales.lepton_scale)]
    if constraints.causality:
        blocks += [("causality", 6, scales.causality_scale)]
    names = task_names(constraints)
    w = np.zeros((sum(n for _, n, _ in blocks), len(names)))
    row = 0
    for name, n, scale in blocks:
        if name in names:
            w[row : row + n, names.index(name)] = 1.0 / (n * scale)
        row += n
    return torch.tensor(w, dtype=dtype, device=device)


def task_losses(
    pred: torch.Tensor,
    target: torch.Tensor,
    initial: torch.Tensor,
    constraints: ConstraintsConfig,
    scales: LossConfig,
) -> torch.Tensor:
    """The active tasks' losses (T,), in `task_names` order: every residual (the error, the
    conserved quantities' change, the causality excess) side by side, squared and averaged
    per column at once, then one matmul to the tasks (a dozen ops per step, not thirty)."""
    parts = [pred - target]
    if constraints.number or constraints.lepton:
        parts.append(conserved_change(pred, initial))
    if constraints.causality:
        parts.append(causality_excess(pred))
    per_column = torch.cat(parts, 1).square().mean(0)
    return per_column @ _loss_matrix(constraints, scales, str(pred.device), pred.dtype)
