"""train: the residual model with loss weighting, optional PCGrad, checkpoints at the
cadence, resume, and a one-batch smoke check.

Outputs under `training.output_dir`: `best_model.pt` (lowest validation accuracy loss),
`training_history.json`, `resolved_model.yaml` / `resolved_train_parms.yaml`; under
`checkpoint.dir`: `latest_model.pt` every epoch and `checkpoint_epoch_<n>.pt` every
`checkpoint.every` epochs."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pipekit.atomic import replacing_uri
from pipekit.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from pipekit.device import resolve_device
from pipekit.errors import PipelineError
from pipekit.faults import crashpoint
from pipekit.monitoring import StepMetrics, run_id, step_metrics
from pipekit.progress import progress
from pipekit.runlock import run_lock
from pipekit.timing import DataWait, peak_memory_gib, reset_peak_memory
from pipekit.uri import join_uri, uri_exists
from rheidae.config import EXPERIMENT, TRAIN_PARMS, TrainSetup
from rheidae.data.dataset import Split, batches, splits, to_device
from rheidae.losses import task_losses, task_names
from rheidae.models import create_model
from rheidae.paths import BEST_MODEL, HISTORY, LATEST_MODEL
from rheidae.weighting import Weighting, make_weighting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    output_dir: str
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    samples_per_s: float
    final_weights: list[float]


def model_spec(setup: TrainSetup) -> dict[str, Any]:
    m = setup.experiment.model
    return {
        "architecture": m.architecture,
        "hidden_dims": list(m.hidden_dims),
        "dropout": m.dropout,
    }


def build(spec: dict[str, Any]) -> nn.Module:
    return create_model(
        spec["architecture"], **{k: v for k, v in spec.items() if k != "architecture"}
    )


def predict(model: nn.Module, x: torch.Tensor, residual: bool) -> torch.Tensor:
    """Final moments (scaled): the output, or Box3D plus it."""
    out = model(x)
    return x[:, 24:] + out if residual else out


def _step(model, weighting: Weighting, opt, x, y, setup: TrainSetup, pcgrad) -> torch.Tensor:
    p = setup.parms
    pred = predict(model, x, p.targets.predict_residual)
    losses = task_losses(pred, y, x[:, :24], p.constraints, setup.experiment.loss)
    weighting.update(losses, model.shared)
    weighted = weighting.weighted(losses)
    opt.zero_grad(set_to_none=True)
    if pcgrad is not None and len(weighted) > 1:
        from torchjd.autojac import backward, jac_to_grad

        params = [q for q in model.parameters() if q.requires_grad]
        extra = [q for q in weighting.parameters() if q.requires_grad]
        if extra:  # the weighting's own parameters learn from the plain objective
            weighted.sum().backward(inputs=extra, retain_graph=True)
        backward(list(weighted), inputs=params)
        jac_to_grad(params, pcgrad)
    else:
        weighted.sum().backward()
    opt.step()
    return losses.detach()


@torch.inference_mode()
def accuracy_loss(model: nn.Module, split: Split, residual: bool) -> float:
    model.eval()
    on = next(model.parameters()).device
    pred = predict(model, split.x.to(on), residual)
    return float(torch.mean((pred - split.y.to(on)) ** 2))


@dataclass
class _Training:
    """The model, its loss weighting, optimizer and schedule, on one device."""

    setup: TrainSetup
    device: torch.device
    spec: dict[str, Any]
    model: nn.Module
    weighting: Weighting
    opt: torch.optim.Optimizer
    sched: Any
    pcgrad: Any
    names: list[str]

    @classmethod
    def build(cls, setup: TrainSetup, device: torch.device) -> _Training:
        exp, parms = setup.experiment, setup.parms
        spec = model_spec(setup)
        model = build(spec).to(device)
        names = task_names(parms.constraints)
        weighting = make_weighting(parms.weighting, len(names)).to(device)
        opt = torch.optim.AdamW(
            [
                *model.parameters(),
                *[q for q in weighting.parameters() if q is not getattr(weighting, "w", None)],
            ],
            lr=exp.optimizer.lr,
            weight_decay=exp.optimizer.weight_decay,
            # one kernel for all parameters instead of several per tensor: a small model's
            # step is bound by the number of ops (0.35 -> 0.07 ms a step here)
            fused=device.type in ("cpu", "cuda"),
        )
        sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, exp.training.epochs, exp.scheduler.min_lr
            )
            if exp.scheduler.name == "cosine"
            else None
        )
        pcgrad = None
        if parms.pcgrad.enabled:
            from torchjd.aggregation import PCGrad

            pcgrad = PCGrad()
        return cls(setup, device, spec, model, weighting, opt, sched, pcgrad, names)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _step(self.model, self.weighting, self.opt, x, y, self.setup, self.pcgrad)

    def restore(self, latest: str) -> dict[str, Any]:
        """The training state of `latest` (every weight, the optimizer, the RNG), loaded."""
        ckpt = load_checkpoint(latest)
        self.model.load_state_dict(ckpt["model_state"])
        self.weighting.load_state_dict(ckpt["weighting_state"])
        self.opt.load_state_dict(ckpt["optimizer_state"])
        if self.sched is not None:
            self.sched.load_state_dict(ckpt["scheduler_state"])
        set_rng_state(ckpt["rng"])
        state = ckpt["train_state"]
        if hasattr(self.weighting, "history"):
            self.weighting.history = state.get("dwa_history", [])
        log.info("resuming after epoch %d from %s", state["epoch"], latest)
        return state

    def epoch(self, train_set: Split, epoch: int, metrics: StepMetrics) -> dict[str, Any]:
        """One pass; the task losses' means, the speed and the share of time spent waiting."""
        exp = self.setup.experiment
        self.model.train()
        # the epoch's losses add up where they are computed: no host sync per step
        sums = torch.zeros(len(self.names), device=self.device)
        n, t0 = 0, time.perf_counter()
        epoch_batches = DataWait(batches(train_set, exp.data, epoch, True, self.device))
        reset_peak_memory(self.device)
        n_batches = -(-len(train_set.x) // exp.data.batch_size)  # the last one may be short
        bar = progress(
            epoch_batches, total=n_batches, desc=f"epoch {epoch}", unit="batch", leave=False
        )
        for x, y in bar:
            t = time.perf_counter()
            losses = self.step(x, y)
            sums.add_(losses, alpha=len(x))
            n += len(x)
            metrics.batch(len(x), time.perf_counter() - t)
        if not torch.isfinite(sums).all():  # a NaN or inf in any step stays in the sum
            shown = dict(zip(self.names, (sums / n).tolist(), strict=True))
            raise PipelineError(
                f"epoch {epoch}: non-finite task losses {shown}; lower optimizer.lr"
            )
        return {
            "means": (sums / n).tolist(),
            "samples_per_s": n / (time.perf_counter() - t0),
            # batches are sliced on the device, without a host sync per step: this is the
            # host's time to hand out the next slice, of the training pass alone
            "data_wait_fraction": epoch_batches.fraction,
        }

    def save(self, state: dict[str, Any], improved: bool) -> None:
        """best_model.pt when the epoch improved; latest_model.pt every epoch, and a
        numbered checkpoint at the cadence."""
        exp, parms = self.setup.experiment, self.setup.parms
        epoch = state["epoch"]
        if improved:
            save_checkpoint(
                join_uri(exp.training.output_dir, BEST_MODEL),
                {
                    "model_state": self.model.state_dict(),
                    "model_spec": self.spec,
                    "predict_residual": parms.targets.predict_residual,
                    "target_scale": exp.data.target_scale,
                    "epoch": epoch,
                    "tasks": self.names,
                },
            )
        payload = {
            "model_state": self.model.state_dict(),
            "weighting_state": self.weighting.state_dict(),
            "optimizer_state": self.opt.state_dict(),
            "rng": rng_state(),
            "train_state": state,
            "scheduler_state": self.sched.state_dict() if self.sched is not None else {},
        }
        save_checkpoint(join_uri(parms.checkpoint.dir, LATEST_MODEL), payload)
        crashpoint("train.latest_saved")
        if epoch % parms.checkpoint.every == 0:
            save_checkpoint(join_uri(parms.checkpoint.dir, f"checkpoint_epoch_{epoch}.pt"), payload)


def _smoke(tr: _Training, data: dict[str, Split]) -> TrainResult:
    exp = tr.setup.experiment
    x, y = next(batches(data["train"], exp.data, 0, False, tr.device))
    losses = tr.step(x, y)
    if not torch.isfinite(losses).all():
        raise PipelineError(f"smoke check: non-finite task losses {losses.tolist()}")
    return TrainResult(exp.training.output_dir, 0, float(losses[0]), 0, 0.0, tr.weighting.weights())


def run(setup: TrainSetup, resume: bool = False, smoke: bool = False) -> TrainResult:
    exp, parms = setup.experiment, setup.parms
    data = splits(exp.data)
    torch.manual_seed(exp.data.seed)
    device = resolve_device(exp.training.device)
    train_set, val_set = to_device(data["train"], device), to_device(data["val"], device)
    tr = _Training.build(setup, device)
    if smoke:
        return _smoke(tr, data)
    out_dir, latest = exp.training.output_dir, join_uri(parms.checkpoint.dir, LATEST_MODEL)
    state: dict[str, Any] = {"epoch": 0, "best": math.inf, "best_epoch": 0, "bad": 0, "history": []}
    with run_lock(out_dir, "train"):
        if resume and uri_exists(latest):
            state = tr.restore(latest)
        metrics = StepMetrics(
            "rheidae",
            "train",
            run_id(exp.monitoring, "rheidae"),
            scores={"val_accuracy": "Validation MSE"},
            loss="Weighted objective",
        )
        speed = 0.0
        with step_metrics(metrics, exp.monitoring):
            for epoch in range(state["epoch"] + 1, exp.training.epochs + 1):
                done = tr.epoch(train_set, epoch, metrics)
                speed, means = done["samples_per_s"], done["means"]
                if tr.sched is not None:
                    tr.sched.step()
                tr.weighting.epoch_done(means)
                val = accuracy_loss(tr.model, val_set, parms.targets.predict_residual)
                state["history"].append(
                    {
                        "epoch": epoch,
                        **dict(zip(tr.names, means, strict=True)),
                        "val_accuracy": val,
                        "weights": tr.weighting.weights(),
                        "samples_per_s": speed,
                        "data_wait_fraction": done["data_wait_fraction"],
                        "peak_gpu_gib": peak_memory_gib(device),
                    }
                )
                state["dwa_history"] = getattr(tr.weighting, "history", [])
                metrics.pass_done({"samples_per_s": speed, "val_accuracy": val}, epoch)
                log.info(
                    "epoch %d: %s, val accuracy %.3e",
                    epoch,
                    ", ".join(f"{k} {v:.3e}" for k, v in zip(tr.names, means, strict=True)),
                    val,
                )
                state["epoch"] = epoch
                improved = val < state["best"]
                if improved:
                    state.update(best=val, best_epoch=epoch, bad=0)
                else:
                    state["bad"] += 1
                tr.save(state, improved)
                if state["bad"] >= exp.training.patience:
                    log.info("no better validation accuracy for %d epochs: stopping", state["bad"])
                    break
        _write_outputs(setup, state)
    if not math.isfinite(state["best"]):
        raise PipelineError("no epoch gave a finite validation loss")
    return TrainResult(
        out_dir, state["best_epoch"], state["best"], state["epoch"], speed, tr.weighting.weights()
    )


def _write_outputs(setup: TrainSetup, state: dict[str, Any]) -> None:
    out_dir = setup.experiment.training.output_dir
    with replacing_uri(join_uri(out_dir, HISTORY), "w") as fh:
        json.dump(state["history"], fh, indent=2)
    EXPERIMENT.save_resolved(setup.experiment, join_uri(out_dir, "resolved_model.yaml"))
    TRAIN_PARMS.save_resolved(setup.parms, join_uri(out_dir, "resolved_train_parms.yaml"))
