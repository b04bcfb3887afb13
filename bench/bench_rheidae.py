"""Rheidae benchmarks, ratios of measurements taken side by side here.

1. Box3D points/s: the vectorized prescription over a batch against the same code called
   one point at a time (a per-point loop, as a script over runs would do).
2. Training samples/s (forward, weighted losses, backward, step; kendall_gal) against a raw
   read of the same arrays in the same batches (the data path's own limit), for the demo's
   model and for the package's default one (batch 256, three hidden layers of 256: per-step
   work is spread over twice the samples, and the arithmetic is a larger share). Each figure is
   its best epoch: an epoch is a tenth of a second here, and one slow epoch of a shared
   machine moved a single-epoch ratio from 0.46x to 0.25x between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from pipekit.progress import set_progress
from rheidae.box3d import box3d
from rheidae.config import load_preprocess, load_training
from rheidae.data.dataset import batches, splits
from rheidae.demo import initial_moments, make_demo
from rheidae.paths import HISTORY
from rheidae.steps import preprocess, train


def bench_box3d(points: int, loop_points: int) -> None:
    f4 = initial_moments(points, np.random.default_rng(0))
    box3d(f4[:10])  # warm-up (quadrature)
    t0 = time.perf_counter()
    box3d(f4)
    vec = points / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(loop_points):
        box3d(f4[i : i + 1])
    loop = loop_points / (time.perf_counter() - t0)
    print(f"  vectorized ({points:,} points): {vec:,.0f} points/s")
    print(f"  per-point loop ({loop_points:,} points): {loop:,.0f} points/s")
    print(f"  vectorized / loop: {vec / loop:.0f}x")


def bench_training(runs: int, epochs: int, overrides: list[str]) -> None:
    set_progress(False)
    with tempfile.TemporaryDirectory() as tmp:
        d = make_demo(Path(tmp), n_runs=runs)
        os.chdir(d.root)  # the configs' paths are read from the project folder
        preprocess.run(load_preprocess(str(d.pre_process), ["logging.show_progress=false"]))
        setup = load_training(
            str(d.model_config),
            str(d.train_parms),
            [
                f"training.epochs={epochs}",
                f"training.output_dir={tmp}/r",
                f"checkpoint.dir={tmp}/c",
                "training.patience=1000",
                *overrides,
            ],
        )
        train.run(setup)
        history = json.loads((Path(tmp) / "r" / HISTORY).read_text())
        trained = max(h["samples_per_s"] for h in history)
        cfg = setup.experiment.data
        data = splits(cfg)["train"]
        raw = _rate(
            epochs, lambda: batches(data, cfg, 0, True), lambda x, y: torch.cat([x, y], 1).sum()
        )
        old = DataLoader(TensorDataset(data.x, data.y), batch_size=cfg.batch_size, shuffle=True)
        raw_loader = _rate(epochs, lambda: old, lambda x, y: torch.cat([x, y], 1).sum())
        model = train.build(train.model_spec(setup))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

        def bare(x: torch.Tensor, y: torch.Tensor) -> None:  # the model's own step, nothing else
            loss = torch.mean((model(x) - y) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        floor = _rate(epochs, lambda: batches(data, cfg, 0, True), bare)
        arithmetic = _matmul_rate(epochs, model, cfg.batch_size)
    print(f"  training (best of {epochs} epochs): {trained:,.0f} samples/s")
    print(f"  raw read, the training batches (slices in memory): {raw:,.0f} samples/s")
    print(
        f"  raw read, a DataLoader over a TensorDataset (the loader before): "
        f"{raw_loader:,.0f} samples/s"
    )
    print(f"  the model's bare step (MSE, backward, fused AdamW): {floor:,.0f} samples/s")
    print(
        f"  the bare step's matrix products alone (forward and backward, no autograd): "
        f"{arithmetic:,.0f} samples/s: {trained / arithmetic:.0%} of a training step's time"
    )
    print(f"  training / raw read: {trained / raw:.2f}x")
    print(f"  training / the DataLoader's read: {trained / raw_loader:.2f}x")
    print(f"  training / bare step: {trained / floor:.2f}x")


def _matmul_rate(epochs: int, model: torch.nn.Module, batch: int) -> float:
    """Samples/s of the arithmetic of the model's step: its linear layers' products, forward
    (activation @ W.T) and backward (the weights' and the inputs' gradients, none for the
    data), on tensors of the step's shapes, without autograd or the optimizer."""
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear)]
    acts = [torch.randn(batch, w.shape[1]) for w in weights]
    grads = [torch.randn(batch, w.shape[0]) for w in weights]

    def products() -> None:
        for i, (w, a, g) in enumerate(zip(weights, acts, grads, strict=True)):
            a @ w.T
            g.T @ a
            if i:
                g @ w

    best = 0.0
    for _ in range(epochs):
        n, t0 = 0, time.perf_counter()
        while n < 200 * batch:
            products()
            n += batch
        best = max(best, n / (time.perf_counter() - t0))
    return best


def _rate(epochs: int, make_batches, work) -> float:
    """Samples/s of the best of `epochs` passes."""
    best = 0.0
    for _ in range(epochs):
        n, t0 = 0, time.perf_counter()
        for x, y in make_batches():
            work(x, y)
            n += len(x)
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--points", type=int, default=20_000)
    p.add_argument("--loop-points", type=int, default=300)
    p.add_argument("--runs", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args()
    print("1. Box3D (Lebedev order 17, 110 directions)")
    bench_box3d(args.points, args.loop_points)
    print(f"2. training ({args.runs:,} demo runs), the demo's model: batch 128, MLP 48-128-128-24")
    bench_training(args.runs, args.epochs, [])
    print("3. the same, the package's default model: batch 256, MLP 48-256-256-256-24")
    bench_training(
        args.runs,
        args.epochs,
        ["data.batch_size=256", "model.hidden_dims=[256,256,256]", "optimizer.lr=1.0e-3"],
    )


if __name__ == "__main__":
    main()
