"""One epoch of training and batched inference over a voxel stream."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from pipekit.device import autocast
from pipekit.progress import progress
from voxelflex.data.loader import Batch, to_device

log = logging.getLogger(__name__)

# called after each batch with (samples, seconds, loss or None): the step's metrics
OnBatch = Callable[[int, float, float | None], None]


def train_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    grad_scaler: torch.amp.GradScaler,
    device: torch.device,
    *,
    amp: bool,
    clip_norm: float,
    total_samples: int,
    max_batches: int | None = None,
    desc: str = "train",
    on_batch: OnBatch | None = None,
) -> dict[str, float]:
    model.train()
    loss_sum, n_seen = 0.0, 0
    wait, start = 0.0, time.perf_counter()
    bar = progress(total=total_samples, desc=desc, unit="sample", unit_scale=True)
    t_ready = time.perf_counter()
    for n_batches, batch in enumerate(batches, start=1):
        wait += time.perf_counter() - t_ready
        voxels, index, temp, target = to_device(batch, device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            pred = model(voxels, temp, index)  # (B,)
            loss = nn.functional.mse_loss(pred.float(), target)
        grad_scaler.scale(loss).backward()
        if clip_norm > 0:
            grad_scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        grad_scaler.step(optimizer)
        grad_scaler.update()
        b = len(target)
        batch_loss = float(loss.detach())
        loss_sum += batch_loss * b
        n_seen += b
        bar.update(b)
        bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}", refresh=False)
        now = time.perf_counter()
        if on_batch is not None:
            on_batch(b, now - t_ready, batch_loss)
        t_ready = now
        if max_batches is not None and n_batches >= max_batches:
            break
    bar.close()
    seconds = time.perf_counter() - start
    return {
        "train_loss": loss_sum / max(n_seen, 1),
        "train_samples": n_seen,
        "samples_per_s": n_seen / seconds if seconds > 0 else 0.0,
        "data_wait_fraction": wait / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
    }


@torch.no_grad()
def predict_batches(
    model: nn.Module,
    batches: Iterable[Batch],
    device: torch.device,
    *,
    amp: bool = False,
    total_samples: int | None = None,
    desc: str = "predict",
    on_batch: OnBatch | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, predictions, targets) in arrival order; rows index the stream's table."""
    model.eval()
    rows: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    bar = progress(total=total_samples, desc=desc, unit="sample", unit_scale=True)
    t_ready = time.perf_counter()
    for batch in batches:
        voxels, index, temp, _ = to_device(batch, device)
        with autocast(device, amp):
            pred = model(voxels, temp, index)
        preds.append(pred.float().cpu().numpy())
        rows.append(batch["row"].numpy())
        targets.append(batch["target"].numpy())
        bar.update(len(pred))
        now = time.perf_counter()
        if on_batch is not None:
            on_batch(len(pred), now - t_ready, None)
        t_ready = now
    bar.close()
    if not rows:
        empty = np.zeros(0, dtype=np.float32)
        return np.zeros(0, dtype=np.int64), empty, empty
    return np.concatenate(rows), np.concatenate(preds), np.concatenate(targets)
