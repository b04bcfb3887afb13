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


def run(setup: TrainSetup, resume: bool = False, smoke: bool = False) -> TrainResult:
    exp, parms = setup.experiment, setup.parms
    data = splits(exp.data)
    torch.manual_seed(exp.data.seed)
    device = resolve_device(exp.training.device)
    train_set, val_set = to_device(data["train"], device), to_device(data["val"], device)
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
        # one kernel for all parameters instead of several per tensor: a small model's step
        # is bound by the number of ops (0.35 -> 0.07 ms a step here)
        fused=device.type in ("cpu", "cuda"),
    )
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, exp.training.epochs, exp.scheduler.min_lr)
        if exp.scheduler.name == "cosine"
        else None
    )
    pcgrad = None
    if parms.pcgrad.enabled:
        from torchjd.aggregation import PCGrad

        pcgrad = PCGrad()
    residual = parms.targets.predict_residual
    if smoke:
        x, y = next(batches(data["train"], exp.data, 0, False, device))
        losses = _step(model, weighting, opt, x, y, setup, pcgrad)
        if not torch.isfinite(losses).all():
            raise PipelineError(f"smoke check: non-finite task losses {losses.tolist()}")
        return TrainResult(
            exp.training.output_dir, 0, float(losses[0]), 0, 0.0, weighting.weights()
        )
    out_dir, ckpt_dir = exp.training.output_dir, parms.checkpoint.dir
    latest = join_uri(ckpt_dir, LATEST_MODEL)
    state: dict[str, Any] = {"epoch": 0, "best": math.inf, "best_epoch": 0, "bad": 0, "history": []}
    with run_lock(out_dir, "train"):
        if resume and uri_exists(latest):
            ckpt = load_checkpoint(latest)
            model.load_state_dict(ckpt["model_state"])
            weighting.load_state_dict(ckpt["weighting_state"])
            opt.load_state_dict(ckpt["optimizer_state"])
            if sched is not None:
                sched.load_state_dict(ckpt["scheduler_state"])
            set_rng_state(ckpt["rng"])
            state = ckpt["train_state"]
            if hasattr(weighting, "history"):
                weighting.history = state.get("dwa_history", [])
            log.info("resuming after epoch %d from %s", state["epoch"], latest)
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
                model.train()
                # the epoch's losses add up where they are computed: no host sync per step
                sums = torch.zeros(len(names), device=device)
                n, t0 = 0, time.perf_counter()
                epoch_batches = DataWait(batches(train_set, exp.data, epoch, True, device))
                reset_peak_memory(device)
                for x, y in progress(epoch_batches, desc=f"epoch {epoch}", leave=False):
                    t = time.perf_counter()
                    losses = _step(model, weighting, opt, x, y, setup, pcgrad)
                    sums += losses * len(x)
                    n += len(x)
                    metrics.batch(len(x), time.perf_counter() - t)
                wait = epoch_batches.fraction  # of the training pass alone
                if not torch.isfinite(sums).all():  # a NaN or inf in any step stays in the sum
                    shown = dict(zip(names, (sums / n).tolist(), strict=True))
                    raise PipelineError(
                        f"epoch {epoch}: non-finite task losses {shown}; lower optimizer.lr"
                    )
                speed = n / (time.perf_counter() - t0)
                if sched is not None:
                    sched.step()
                means = (sums / n).tolist()
                weighting.epoch_done(means)
                val = accuracy_loss(model, val_set, residual)
                state["history"].append(
                    {
                        "epoch": epoch,
                        **dict(zip(names, means, strict=True)),
                        "val_accuracy": val,
                        "weights": weighting.weights(),
                        "samples_per_s": speed,
                        # batches are sliced on the device, without a host sync per step:
                        # this is the host's time to hand out the next slice
                        "data_wait_fraction": wait,
                        "peak_gpu_gib": peak_memory_gib(device),
                    }
                )
                state["dwa_history"] = getattr(weighting, "history", [])
                metrics.pass_done({"samples_per_s": speed, "val_accuracy": val}, epoch)
                log.info(
                    "epoch %d: %s, val accuracy %.3e",
                    epoch,
                    ", ".join(f"{k} {v:.3e}" for k, v in zip(names, means, strict=True)),
                    val,
                )
                state["epoch"] = epoch
                if val < state["best"]:
                    state.update(best=val, best_epoch=epoch, bad=0)
                    save_checkpoint(
                        join_uri(out_dir, BEST_MODEL),
                        {
                            "model_state": model.state_dict(),
                            "model_spec": spec,
                            "predict_residual": residual,
                            "target_scale": exp.data.target_scale,
                            "epoch": epoch,
                            "tasks": names,
                        },
                    )
                else:
                    state["bad"] += 1
                payload = {
                    "model_state": model.state_dict(),
                    "weighting_state": weighting.state_dict(),
                    "optimizer_state": opt.state_dict(),
                    "rng": rng_state(),
                    "train_state": state,
                    "scheduler_state": sched.state_dict() if sched is not None else {},
                }
                save_checkpoint(latest, payload)
                crashpoint("train.latest_saved")
                if epoch % parms.checkpoint.every == 0:
                    save_checkpoint(join_uri(ckpt_dir, f"checkpoint_epoch_{epoch}.pt"), payload)
                if state["bad"] >= exp.training.patience:
                    log.info("no better validation accuracy for %d epochs: stopping", state["bad"])
                    break
        with replacing_uri(join_uri(out_dir, HISTORY), "w") as fh:
            json.dump(state["history"], fh, indent=2)
        EXPERIMENT.save_resolved(exp, join_uri(out_dir, "resolved_model.yaml"))
        TRAIN_PARMS.save_resolved(parms, join_uri(out_dir, "resolved_train_parms.yaml"))
    if not math.isfinite(state["best"]):
        raise PipelineError("no epoch gave a finite validation loss")
    return TrainResult(
        out_dir, state["best_epoch"], state["best"], state["epoch"], speed, weighting.weights()
    )
