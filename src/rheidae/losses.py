"""The tasks the model is trained on: accuracy (MSE on the final moments) and physics
(conservation of total numbers and fluxes, of each flavor's lepton number, and causality
|F| <= N), each a scalar loss over a batch, in the loader's scaled units."""

from __future__ import annotations

import torch

from rheidae.config.schema import ConstraintsConfig, LossConfig


def _f4(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, 4, 2, 3)


def conserved_numbers(f: torch.Tensor) -> torch.Tensor:
    """(B, 8): total nu and nubar numbers, total nu and nubar fluxes."""
    f4 = _f4(f)
    totals = f4[:, 3].sum(-1)  # (B, 2)
    flux = f4[:, :3].sum(-1).reshape(-1, 6)  # (B, 6)
    return torch.cat([totals, flux], 1)


def lepton_numbers(f: torch.Tensor) -> torch.Tensor:
    f4 = _f4(f)
    return f4[:, 3, 0] - f4[:, 3, 1]  # (B, 3)


def causality_excess(f: torch.Tensor) -> torch.Tensor:
    f4 = _f4(f)
    return torch.relu(torch.linalg.vector_norm(f4[:, :3], dim=1) - f4[:, 3])  # (B, 2, 3)


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
    if constraints.number:
        d = conserved_numbers(pred) - conserved_numbers(initial)
        out.append(torch.mean(d**2) / scales.number_scale)
    if constraints.lepton:
        d = lepton_numbers(pred) - lepton_numbers(initial)
        out.append(torch.mean(d**2) / scales.lepton_scale)
    if constraints.causality:
        out.append(torch.mean(causality_excess(pred) ** 2) / scales.causality_scale)
    return torch.stack(out)
