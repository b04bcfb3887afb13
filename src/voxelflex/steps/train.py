"""Train: AdamW, LR schedule, AMP where supported, clipping, early stopping on val Pearson r.

Checkpoints (`best_model.pt`, `latest_model.pt`, every `checkpoint_every` epochs) hold the
weights, model config, temperature scaling, optimizer/scheduler/RNG state and history, so
`--resume` continues from `latest_model.pt` as if the run had never stopped.

Under `torchrun` the same command trains data-parallel (DistributedDataParallel): each rank
reads its own shard of every epoch (see `data.loader`), validation predictions are gathered
so every rank takes the same early-stopping and LR decisions, and rank 0 alone writes
checkpoints, history and metrics. Checkpoints hold the bare model, so they load anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from pipekit.atomic import replacing_uri
from pipekit.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from pipekit.device import amp_enabled, resolve_device
from pipekit.distributed import (
    SINGLE,
    Dist,
    all_gathered,
    barrier,
    distributed,
    gather_arrays,
)
from pipekit.errors import InputDataError, PipelineError
from pipekit.faults import crashpoint
from pipekit.runlock import run_lock
from pipekit.uri import uri_exists
from voxelflex.config import Config, save_resolved_config
from voxelflex.data.loader import StreamSettings, VoxelStream, make_loader, to_device
from voxelflex.data.samples import SampleIndex, read_master_samples
from voxelflex.data.sources import open_voxel_source
from voxelflex.data.temperature import TemperatureScaler
from voxelflex.models import create_model
from voxelflex.monitoring import step_metrics
from voxelflex.paths import RunPaths
from voxelflex.training.loop import predict_batches, train_epoch
from voxelflex.training.metrics import regression_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    best_model: str
    latest_model: str
    history: str
    best_val_pearson: float
    epochs_run: int
    last_epoch: dict[str, float]  # the final history entry: losses, val metrics, samples/s


def model_config(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg.model)


def build_model(cfg: Config) -> torch.nn.Module:
    mc = model_config(cfg)
    return create_model(mc.pop("architecture"), **mc)


def _streams(
    cfg: Config, scaler: TemperatureScaler, d: Dist = SINGLE
) -> tuple[VoxelStream, VoxelStream]:
    paths = RunPaths.from_config(cfg)
    table = read_master_samples(paths.master_samples, ("train", "val"))
    source = open_voxel_source(cfg.input.voxel_file)
    t = cfg.training
    out = []
    for split, shuffle in (("train", True), ("val", False)):
        part = table.loc[table["split"] == split]
        if part.empty:
            raise InputDataError(
                f"no {split} samples in {paths.master_samples}; check the split files"
            )
        settings = StreamSettings(
            t.batch_size, t.chunk_size, shuffle, t.shuffle_buffer_size, t.seed, d.rank, d.world_size
        )
        out.append(VoxelStream(source, SampleIndex.from_table(part, scaler), settings))
    return out[0], out[1]


def _lr_lambda(warmup: int, total: int):
    def fn(epoch: int) -> float:
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        progress = (epoch - warmup) / max(1, total - warmup)
        return max(0.05, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return fn


def _scheduler(cfg: Config, optimizer: torch.optim.Optimizer):
    t = cfg.training
    if t.scheduler == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_lambda(t.warmup_epochs, t.num_epochs)
        )
    if t.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", patience=2, factor=0.5
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _validate(model, stream: VoxelStream, device, amp: bool, d: Dist) -> dict[str, float]:
    _, preds, target = predict_batches(
        model,
        make_loader(stream, 0),
        device,
        amp=amp,
        total_samples=stream.index.n_samples // d.world_size,
        desc="validate",
    )
    preds, target = gather_arrays(d, preds, target)  # each rank predicted its shard
    m = regression_metrics(target, preds)
    return {
        "val_loss": m["rmse"] ** 2,
        "val_pearson": m["pearson"],
        "val_rmse": m["rmse"],
        "val_mae": m["mae"],
    }


def _save_history(uri: str, history: list[dict[str, Any]]) -> None:
    with replacing_uri(uri, "w") as fh:
        json.dump(history, fh, indent=2)


def _combine(d: Dist, stats: dict[str, float]) -> dict[str, float]:
    """One epoch's training stats over all ranks: sample-weighted loss, total throughput."""
    if not d.active:
        return stats
    ranks = all_gathered(d, stats)
    total = sum(r["train_samples"] for r in ranks)
    seconds = max(r["seconds"] for r in ranks)
    return {
        "train_loss": sum(r["train_loss"] * r["train_samples"] for r in ranks) / max(total, 1),
        "train_samples": total,
        "samples_per_s": total / seconds if seconds > 0 else 0.0,
        "data_wait_fraction": sum(r["data_wait_fraction"] for r in ranks) / len(ranks),
        "seconds": seconds,
    }


class TrainingDiverged(PipelineError):
    """The loss became NaN or infinite: nothing of that epoch is kept."""


def run(cfg: Config, resume: bool | str = False) -> TrainResult:
    """Train; `resume=True` continues from latest_model.pt, `"auto"` does so when it exists
    (a restarted job), else starts afresh. The run folder is held for the whole run (rank 0
    holds it under torchrun): a second writer fails at once, naming this one."""
    with distributed(cfg.training.device) as (d, device):
        if not d.is_main:
            return _run(cfg, resume, d, device)
        with run_lock(RunPaths.from_config(cfg).run_dir, "voxelflex train"):
            return _run(cfg, resume, d, device)


def load_scaling(paths: RunPaths, write_copy: bool) -> TemperatureScaler:
    """The temperature scaling of the sample metadata (kept with it since preprocess, so runs
    of a sweep share it; an older preprocess left it only in its own run's models/), copied
    beside this run's models."""
    source = paths.processed_temp_scaling
    if not uri_exists(source):
        source = paths.temp_scaling
    scaler = TemperatureScaler.load(source)
    if write_copy and source != paths.temp_scaling:
        scaler.save(paths.temp_scaling)
    return scaler


def _reconcile(paths: RunPaths, ckpt: dict[str, Any], every: int) -> None:
    """Make best_model.pt, the epoch checkpoint and training_history.json agree with
    latest_model.pt, the commit point of an epoch: a kill after it but before the others
    leaves them one epoch behind, and this brings them up to it."""
    epoch = ckpt["epoch"]
    if ckpt.get("best_epoch") == epoch:  # this epoch improved: best is this same payload
        best = load_checkpoint(paths.best_model) if uri_exists(paths.best_model) else None
        if best is None or best["epoch"] != epoch:
            log.info("best_model.pt brought up to epoch %d from latest_model.pt", epoch + 1)
            save_checkpoint(paths.best_model, ckpt)
    if every and (epoch + 1) % every == 0 and not uri_exists(paths.epoch_model(epoch + 1)):
        save_checkpoint(paths.epoch_model(epoch + 1), ckpt)
    _save_history(paths.training_history, ckpt["history"])


@dataclass
class _Progress:
    """Where training stands: what a resumed run continues from."""

    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best: float = -math.inf
    stale: int = 0
    start_epoch: int = 0
    best_epoch: int = -1

    def record(self, epoch: int, row: dict[str, Any]) -> bool:
        """Add an epoch (0-based) to the history; whether its validation r is the best yet."""
        val_r = row["val_pearson"]
        improved = math.isfinite(val_r) and val_r > self.best
        self.best, self.stale = (val_r, 0) if improved else (self.best, self.stale + 1)
        self.best_epoch = epoch if improved else self.best_epoch
        self.history.append({"epoch": epoch + 1, **row})
        log.info(
            "epoch %d: train loss %.5f, val loss %.5f, val r %.4f, %.0f samples/s%s",
            epoch + 1,
            row["train_loss"],
            row["val_loss"],
            val_r,
            row["samples_per_s"],
            " (best)" if improved else "",
        )
        return improved

    def checkpointed(self) -> dict[str, Any]:
        """What a checkpoint keeps of it (the names `_restore` reads)."""
        return {
            "history": self.history,
            "best_val_pearson": self.best,
            "best_epoch": self.best_epoch,
            "stale_epochs": self.stale,
        }


def _restore(
    paths: RunPaths,
    scaler: TemperatureScaler,
    every: int,
    d: Dist,
    model,
    optimizer,
    scheduler,
    grad_scaler,
) -> _Progress:
    """Continue exactly from latest_model.pt: weights, optimizer, scheduler, scaler, RNG."""
    if not uri_exists(paths.latest_model):
        raise InputDataError(f"--resume: no checkpoint at {paths.latest_model}")
    # on the CPU: RNG states must stay CPU tensors; weights and optimizer state are
    # copied onto the model's device by load_state_dict
    ckpt = load_checkpoint(paths.latest_model, map_location="cpu")
    if ckpt["temp_scaling"] != scaler.to_dict():
        raise InputDataError(
            f"{paths.latest_model} was trained with temperature scaling "
            f"{ckpt['temp_scaling']}, the sample metadata now has {scaler.to_dict()}: "
            "the data changed since; train into a new output.run_name"
        )
    if d.is_main:
        _reconcile(paths, ckpt, every)
    model.load_state_dict(ckpt["model_state"])
    optimizer.load_state_dict(ckpt["optimizer_state"])
    scheduler.load_state_dict(ckpt["scheduler_state"])
    grad_scaler.load_state_dict(ckpt["grad_scaler_state"])
    set_rng_state(ckpt["rng_state"])
    log.info("resuming from %s after epoch %d", paths.latest_model, ckpt["epoch"] + 1)
    return _Progress(
        list(ckpt["history"]),
        ckpt["best_val_pearson"],
        ckpt["stale_epochs"],
        ckpt["epoch"] + 1,
        ckpt.get("best_epoch", -1),
    )


def _check_finite(
    stats: dict[str, float], val: dict[str, float], epoch: int, kept: str | None, t
) -> None:
    """A NaN or infinite loss ends the run, saving nothing of the epoch; `kept` is the last
    finite checkpoint (None: none was written)."""
    if math.isfinite(stats["train_loss"]) and math.isfinite(val["val_loss"]):
        return
    last = (
        f"{kept} (epoch {epoch}) is the last finite checkpoint"
        if kept
        else "no checkpoint was written"
    )
    raise TrainingDiverged(
        f"training diverged in epoch {epoch + 1}: train loss {stats['train_loss']}, "
        f"validation loss {val['val_loss']}; nothing of this epoch was saved and "
        f"{last}; lower training.learning_rate (now {t.learning_rate:g})"
    )


def _commit(paths: RunPaths, payload: dict[str, Any], improved: bool, every: int) -> None:
    """latest_model.pt is the epoch's commit point; what follows is derived from it and
    `_reconcile` redoes it on resume if a kill came in between."""
    epoch = payload["epoch"]
    save_checkpoint(paths.latest_model, payload)
    crashpoint("train.after_latest")
    if improved:
        save_checkpoint(paths.best_model, payload)
    if every and (epoch + 1) % every == 0:
        save_checkpoint(paths.epoch_model(epoch + 1), payload)
    crashpoint("train.before_history")
    _save_history(paths.training_history, payload["history"])


def _log_start(cfg: Config, model, device, d: Dist, amp: bool, train_stream, val_stream) -> None:
    log.info(
        "training %s (%d parameters) on %s x %d, amp=%s: %d train / %d val samples "
        "(%d / %d residues)",
        cfg.model.architecture,
        sum(p.numel() for p in model.parameters()),
        device,
        d.world_size,
        amp,
        train_stream.index.n_samples,
        val_stream.index.n_samples,
        train_stream.index.n_residues,
        val_stream.index.n_residues,
    )


def _step_scheduler(scheduler, val: dict[str, float]) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val["val_pearson"] if math.isfinite(val["val_pearson"]) else -1.0)
    else:
        scheduler.step()


def _run(cfg: Config, resume: bool | str, d: Dist, device: torch.device) -> TrainResult:
    paths = RunPaths.from_config(cfg)
    if d.is_main:
        save_resolved_config(cfg, paths.resolved_config("train"))
    t = cfg.training
    amp = amp_enabled(device, t.mixed_precision)
    scaler = load_scaling(paths, write_copy=d.is_main)
    train_stream, val_stream = _streams(cfg, scaler, d)

    torch.manual_seed(t.seed)
    model = build_model(cfg).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay
    )
    scheduler = _scheduler(cfg, optimizer)
    grad_scaler = torch.amp.GradScaler(device.type, enabled=amp)
    if resume == "auto":
        resume = uri_exists(paths.latest_model)
    state = _Progress()
    if resume:
        state = _restore(
            paths, scaler, t.checkpoint_every, d, model, optimizer, scheduler, grad_scaler
        )
    # DDP broadcasts rank 0's weights at construction and all-reduces gradients each step;
    # `model` stays the bare module, which checkpoints and validation use
    net = (
        DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        if d.active
        else model
    )
    _log_start(cfg, model, device, d, amp, train_stream, val_stream)
    with step_metrics(cfg, "train", export=d.is_main) as metrics:
        for epoch in range(state.start_epoch, t.num_epochs):
            if state.stale >= t.early_stopping_patience:
                break
            train_stream.set_epoch(epoch)
            loader = make_loader(train_stream, t.num_workers, pin_memory=device.type == "cuda")
            stats = train_epoch(
                net,
                loader,
                optimizer,
                grad_scaler,
                device,
                amp=amp,
                clip_norm=t.gradient_clip_norm,
                total_samples=train_stream.index.n_samples // d.world_size,
                max_batches=t.max_batches_per_epoch,
                desc=f"epoch {epoch + 1}/{t.num_epochs}",
                on_batch=metrics.batch,
            )
            stats = _combine(d, stats)
            val = _validate(model, val_stream, device, amp, d)
            lr = optimizer.param_groups[0]["lr"]
            saved = epoch > state.start_epoch or bool(resume)
            _check_finite(stats, val, epoch, paths.latest_model if saved else None, t)
            _step_scheduler(scheduler, val)
            improved = state.record(epoch, {"learning_rate": lr, **stats, **val})
            payload = {
                "epoch": epoch,
                "model_state": model.state_dict(),
                "model_config": model_config(cfg),
                "temp_scaling": scaler.to_dict(),
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(),
                "grad_scaler_state": grad_scaler.state_dict(),
                "rng_state": rng_state(),
                **state.checkpointed(),
                "val_metrics": val,
            }
            if d.is_main:
                _commit(paths, payload, improved, t.checkpoint_every)
            metrics.pass_done({**stats, **val}, epoch=epoch + 1)
            barrier(d)  # no rank runs ahead of a checkpoint it might need on restart
    return _finish(paths, state, t.early_stopping_patience, d)


def _finish(paths: RunPaths, state: _Progress, patience: int, d: Dist) -> TrainResult:
    if state.stale >= patience:
        log.info("early stopping: no better validation r for %d epochs", state.stale)
    if d.is_main and not uri_exists(paths.best_model):
        # every epoch had an undefined val r (e.g. constant predictions): keep the latest
        save_checkpoint(paths.best_model, load_checkpoint(paths.latest_model))
    barrier(d)
    history = state.history
    return TrainResult(
        paths.best_model,
        paths.latest_model,
        paths.training_history,
        state.best,
        len(history),
        history[-1] if history else {},
    )


def smoke_check(cfg: Config) -> dict[str, float]:
    """Forward and backward on one real training batch, no workers: seconds, not hours."""
    paths = RunPaths.from_config(cfg)
    device = resolve_device(cfg.training.device)
    scaler = load_scaling(paths, write_copy=False)
    train_stream, _ = _streams(cfg, scaler)
    batch = next(iter(make_loader(train_stream, 0)))
    model = build_model(cfg).to(device)
    voxels, index, temp, target = to_device(batch, device)
    pred = model(voxels, temp, index)
    loss = torch.nn.functional.mse_loss(pred, target)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    if missing or not torch.isfinite(loss):
        raise RuntimeError(
            f"smoke check failed: loss={float(loss.detach())}, parameters without grad: {missing}"
        )
    out = {"loss": float(loss.detach()), "samples": len(target), "residues": int(voxels.shape[0])}
    log.info("smoke check passed on %s: %s", device, out)
    return out
