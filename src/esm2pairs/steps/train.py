"""train (train_esm2_frozen_pair_classifier): a pair classifier on frozen embeddings, read
from the master cache through its parquet index; early stopping on validation AUROC;
checkpoint each epoch and resume."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from esm2pairs.config import Config, config_to_dict
from esm2pairs.data.cache import CacheMeta, MasterCache
from esm2pairs.data.pair_loader import PairBatches, loader, rows_of, stage_in_memory
from esm2pairs.metrics import auroc
from esm2pairs.models import create_model
from esm2pairs.paths import Layout
from esm2pairs.steps.embed import master_cache
from esm2pairs.steps.pairs import read_pairs
from pipekit.atomic import replacing_uri
from pipekit.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from pipekit.device import amp_enabled, autocast, resolve_device
from pipekit.errors import InputDataError, PipelineError
from pipekit.faults import crashpoint
from pipekit.monitoring import StepMetrics, run_id, step_metrics
from pipekit.progress import progress
from pipekit.runlock import run_lock
from pipekit.timing import DataWait, peak_memory_gib, reset_peak_memory
from pipekit.uri import uri_exists

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: str
    best_epoch: int
    best_val_auroc: float
    epochs_run: int
    stopped_early: bool
    samples_per_s: float


def checked_cache(layout: Layout) -> tuple[MasterCache, CacheMeta, pd.DataFrame]:
    """The master cache, checked once: what made it and its index."""
    cache = master_cache(layout)
    meta, index = cache.check()
    return cache, meta, index


def pair_batches(
    cfg: Config, layout: Layout, split: str, shuffle: bool, cache: MasterCache, index: pd.DataFrame
) -> tuple[PairBatches, pd.DataFrame]:
    """A split's pairs as row batches, every ID checked against the cache index first;
    returns the pairs too."""
    pairs = read_pairs(layout, split)
    a, b = rows_of(pairs, index, layout.pairs(split))
    batches = PairBatches(
        cache.h5,
        a,
        b,
        pairs["label"].to_numpy(),
        cfg.training.batch_size,
        shuffle,
        cfg.sampling.random_seed,
    )
    return batches, pairs


def model_config(cfg: Config, dim: int) -> dict[str, Any]:
    t = cfg.training
    return {
        "architecture": t.architecture,
        "dim": dim,
        "hidden_dims": list(t.hidden_dims),
        "dropout": t.dropout,
    }


def build(spec: dict[str, Any]) -> nn.Module:
    hparams = {k: v for k, v in spec.items() if k != "architecture"}
    return create_model(spec["architecture"], **hparams)


@torch.inference_mode()
def score(model: nn.Module, batches: PairBatches, device: torch.device, workers: int) -> np.ndarray:
    model.eval()
    out = []
    for a, b, _ in loader(batches, workers):
        out.append(torch.sigmoid(model(a.to(device), b.to(device))).float().cpu().numpy())
    return np.concatenate(out) if out else np.array([], dtype=np.float32)


def _epoch(model, batches, opt, device, amp, scaler, metrics: StepMetrics, workers: int):
    model.train()
    loss_fn = nn.BCEWithLogitsLoss()
    total, n, t0 = 0.0, 0, time.perf_counter()
    reset_peak_memory(device)
    timed = DataWait(loader(batches, workers))
    for a, b, y in progress(timed, total=len(batches), desc="train", unit="batch", leave=False):
        t = time.perf_counter()
        a, b, y = a.to(device), b.to(device), y.to(device)
        with autocast(device, amp):
            loss = loss_fn(model(a, b).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise PipelineError("training loss became non-finite; lower training.learning_rate")
        total += value * len(y)
        n += len(y)
        metrics.batch(len(y), time.perf_counter() - t, value)
    return {
        "train_loss": total / max(n, 1),
        "pairs_per_s": n / max(time.perf_counter() - t0, 1e-9),
        "data_wait_fraction": timed.fraction,
        "peak_gpu_gib": peak_memory_gib(device),
    }


def _save(cfg: Config, layout: Layout, model, opt, spec, meta, state: dict, improved: bool):
    """trained_model.pt when the epoch improved (the classifier and the cache setup it was
    trained on); latest_model.pt, everything a resume needs, every epoch."""
    if improved:
        save_checkpoint(
            layout.trained_model,
            {
                "model_state": model.state_dict(),
                "model_config": spec,
                "cache": asdict(meta),
                "threshold": cfg.training.threshold,
                "epoch": state["epoch"],
                "config": config_to_dict(cfg),
            },
        )
    crashpoint("train.best_saved")
    save_checkpoint(
        layout.latest_model,
        {
            "model_state": model.state_dict(),
            "optimizer_state": opt.state_dict(),
            "rng": rng_state(),
            "train_state": state,
        },
    )


def run(cfg: Config, resume: bool | None = None) -> TrainResult:
    layout = Layout.from_config(cfg)
    t = cfg.training
    torch.manual_seed(cfg.sampling.random_seed)
    cache, meta, index = checked_cache(layout)
    train_b, _ = pair_batches(cfg, layout, "train", True, cache, index)
    val_b, _ = pair_batches(cfg, layout, "val", False, cache, index)
    stage_in_memory([train_b, val_b])  # from object storage: each row fetched once, not per epoch
    device = resolve_device(t.device)
    amp = amp_enabled(device, t.mixed_precision)
    spec = model_config(cfg, meta.dim)
    model = build(spec).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    state: dict[str, Any] = {
        "epoch": 0,
        "best_auroc": -math.inf,
        "best_epoch": 0,
        "bad": 0,
        "history": [],
    }
    resume = t.resume if resume is None else resume
    with run_lock(layout.run_dir, "train"):
        if resume and uri_exists(layout.latest_model):
            ckpt = load_checkpoint(layout.latest_model)
            model.load_state_dict(ckpt["model_state"])
            opt.load_state_dict(ckpt["optimizer_state"])
            set_rng_state(ckpt["rng"])
            state = ckpt["train_state"]
            log.info("resuming after epoch %d from %s", state["epoch"], layout.latest_model)
        labels_val = val_b.labels
        metrics = StepMetrics(
            "esm2pairs",
            "train",
            run_id(cfg.monitoring, cfg.paths.run_name),
            scores={"val_auroc": "Validation AUROC"},
            sample="Pairs",
            loss="Binary cross-entropy",
        )
        speed = 0.0
        stopped = False
        with step_metrics(metrics, cfg.monitoring):
            for epoch in range(state["epoch"] + 1, t.num_epochs + 1):
                train_b.set_epoch(epoch)
                done = _epoch(model, train_b, opt, device, amp, scaler, metrics, t.num_workers)
                speed = done["pairs_per_s"]
                val_auroc = auroc(labels_val, score(model, val_b, device, t.num_workers))
                state["history"].append({"epoch": epoch, **done, "val_auroc": val_auroc})
                log.info(
                    "epoch %d: loss %.4f, val AUROC %.4f", epoch, done["train_loss"], val_auroc
                )
                metrics.pass_done({"samples_per_s": speed, "val_auroc": val_auroc}, epoch)
                state["epoch"] = epoch
                improved = val_auroc > state["best_auroc"]
                if improved:
                    state.update(best_auroc=val_auroc, best_epoch=epoch, bad=0)
                else:
                    state["bad"] += 1
                _save(cfg, layout, model, opt, spec, meta, state, improved)
                if state["bad"] >= t.patience:
                    log.info("no better val AUROC for %d epochs: stopping", t.patience)
                    stopped = True
                    break
        with replacing_uri(layout.history, "w") as fh:
            json.dump(state["history"], fh, indent=2)
    if not math.isfinite(state["best_auroc"]):
        raise InputDataError("validation AUROC was never defined: val pairs need both labels")
    return TrainResult(
        layout.run_dir, state["best_epoch"], state["best_auroc"], state["epoch"], stopped, speed
    )


def smoke(cfg: Config) -> float:
    """Forward and backward on one real training batch, no workers: seconds, before a long
    job, to learn that the cache, the pairs and the model fit together."""
    layout = Layout.from_config(cfg)
    cache, meta, index = checked_cache(layout)
    batches, _ = pair_batches(cfg, layout, "train", False, cache, index)
    device = resolve_device(cfg.training.device)
    model = build(model_config(cfg, meta.dim)).to(device)
    a, b, y = batches[0]
    loss = nn.BCEWithLogitsLoss()(model(a.to(device), b.to(device)), y.to(device))
    loss.backward()
    value = float(loss.detach())
    if not math.isfinite(value):
        raise PipelineError("smoke check: the loss of one batch is not finite")
    return value
