"""How the task losses become one objective: Kendall-Gal uncertainty weights, Dynamic Weight
Average, GradNorm, or a plain sum; `weighted(losses)` gives each task's weighted loss (their
sum is the objective, and PCGrad takes them one by one)."""

from __future__ import annotations

import math

import torch
from torch import nn

from rheidae.config.schema import WeightingConfig


class Weighting(nn.Module):
    """A plain sum (`none`); the base the others refine."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        self.n = n_tasks

    def weighted(self, losses: torch.Tensor) -> torch.Tensor:
        return losses

    def weights(self) -> list[float]:
        return [1.0] * self.n

    def epoch_done(self, mean_losses: list[float]) -> None:
        """After each epoch, with the epoch's mean task losses."""

    def update(self, losses: torch.Tensor, shared: nn.Parameter) -> None:
        """Before the model's backward pass, the graph intact (GradNorm steps its weights)."""


class KendallGal(Weighting):
    """exp(-s_i) L_i + s_i with learned s_i = log sigma_i^2 (Kendall, Gal & Cipolla 2018)."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__(n_tasks)
        self.log_vars = nn.Parameter(torch.zeros(n_tasks))

    def weighted(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.log_vars) * losses + self.log_vars

    def weights(self) -> list[float]:
        return torch.exp(-self.log_vars.detach()).tolist()


class DWA(Weighting):
    """w_i = n exp(r_i / T) / sum_j exp(r_j / T), r_i = L_i(t-1) / L_i(t-2), epoch means
    (Liu, Johns & Davison 2019); equal weights for the first two epochs."""

    _w: torch.Tensor  # a buffer: saved with the checkpoint

    def __init__(self, n_tasks: int, temperature: float) -> None:
        super().__init__(n_tasks)
        self.t = temperature
        self.history: list[list[float]] = []
        self.register_buffer("_w", torch.ones(n_tasks))  # saved with the checkpoint

    def epoch_done(self, mean_losses: list[float]) -> None:
        self.history = [*self.history[-1:], mean_losses]
        if len(self.history) == 2:
            r = torch.tensor(
                [
                    a / b if b > 0 else 1.0
                    for a, b in zip(self.history[1], self.history[0], strict=True)
                ]
            )
            # softmax, not exp / sum: a loss that jumps from 1e-13 to 1e-9 gives r = 1e4,
            # whose exp overflows to inf and turns every weight into NaN
            self._w.copy_(self.n * torch.softmax(r / self.t, 0))

    def weighted(self, losses: torch.Tensor) -> torch.Tensor:
        return self._w.to(losses.device) * losses

    def weights(self) -> list[float]:
        return self._w.tolist()


class GradNorm(Weighting):
    """Learned weights whose task gradient norms at the last shared layer are pulled toward
    the mean norm times (relative inverse training rate)^alpha (Chen et al. 2018); the
    weights are renormalized to sum to the number of tasks after each step."""

    def __init__(self, n_tasks: int, alpha: float, lr: float) -> None:
        super().__init__(n_tasks)
        self.w = nn.Parameter(torch.ones(n_tasks))
        self.alpha = alpha
        self.opt = torch.optim.Adam([self.w], lr=lr)
        self.initial: torch.Tensor | None = None

    def weighted(self, losses: torch.Tensor) -> torch.Tensor:
        return self.w.detach() * losses

    # the weights' own optimizer and the first losses travel in the module's state_dict, so
    # a resumed run continues exactly
    def get_extra_state(self) -> dict:
        return {"optimizer": self.opt.state_dict(), "initial": self.initial}

    def set_extra_state(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.initial = state["initial"]

    def weights(self) -> list[float]:
        return self.w.detach().tolist()

    def update(self, losses: torch.Tensor, shared: nn.Parameter) -> None:
        if self.initial is None:
            self.initial = losses.detach().clamp_min(0.0)
        norms = []
        for i in range(self.n):  # each task's gradient at the shared layer, weighted
            (g,) = torch.autograd.grad(losses[i], shared, retain_graph=True, allow_unused=True)
            g = torch.zeros_like(shared) if g is None else g
            norms.append(self.w[i] * torch.linalg.vector_norm(g.detach()))
        norms_t = torch.stack(norms)
        # a task whose gradient vanishes here (a constraint the model already keeps) has
        # nothing to balance: pulling its weight up would only push the others' down
        live = norms_t.detach() > 1e-6 * norms_t.detach().max()
        if live.sum() < 2:
            return
        # training rate L_i(t) / L_i(0); a task that started at zero (a residual model starts
        # from Box3D, which conserves exactly) has none: it counts as average
        started = self.initial > 1e-9 * self.initial.max()
        rate = torch.where(started, losses.detach() / self.initial, torch.ones_like(losses))
        ratio = rate[live] / rate[live & started].mean() if (live & started).any() else rate[live]
        target = norms_t[live].mean().detach() * ratio**self.alpha
        self.opt.zero_grad()
        torch.sum(torch.abs(norms_t[live] - target)).backward()
        self.opt.step()
        with torch.no_grad():
            self.w.clamp_(min=1e-3)
            self.w.mul_(self.n / self.w.sum())


def make_weighting(cfg: WeightingConfig, n_tasks: int) -> Weighting:
    if cfg.scheme == "kendall_gal":
        return KendallGal(n_tasks)
    if cfg.scheme == "dwa":
        return DWA(n_tasks, cfg.dwa_temperature)
    if cfg.scheme == "gradnorm":
        return GradNorm(n_tasks, cfg.gradnorm_alpha, cfg.gradnorm_lr)
    return Weighting(n_tasks)


def finite(values: list[float]) -> bool:
    return all(math.isfinite(v) for v in values)
