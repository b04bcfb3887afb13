"""Rheidae benchmarks, ratios of measurements taken side by side here.

1. Box3D points/s: the vectorized prescription over a batch against the same code called
   one point at a time (a per-point loop, as a script over runs would do).
2. Training samples/s (forward, weighted losses, backward, step; kendall_gal) against a raw
   read of the same arrays in the same batches (the data path's own limit).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipekit.progress import set_progress
from rheidae.box3d import box3d
from rheidae.config import load_preprocess, load_training
from rheidae.data.dataset import loader, splits
from rheidae.demo import initial_moments, make_demo
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


def bench_training(runs: int, epochs: int) -> None:
    set_progress(False)
    with tempfile.TemporaryDirectory() as tmp:
        d = make_demo(Path(tmp), n_runs=runs)
        preprocess.run(load_preprocess(str(d.pre_process), ["logging.show_progress=false"]))
        setup = load_training(
            str(d.model_config),
            str(d.train_parms),
            [
                f"training.epochs={epochs}",
                f"training.output_dir={tmp}/r",
                f"checkpoint.dir={tmp}/c",
                "training.patience=1000",
            ],
        )
        res = train.run(setup)
        data = splits(setup.experiment.data)["train"]
        t0 = time.perf_counter()
        n = 0
        for _ in range(epochs):
            for x, y in loader(data, setup.experiment.data, 0, True, 0):
                n += len(x)
                torch.cat([x, y], 1).sum()  # touch the batch
        raw = n / (time.perf_counter() - t0)
    print(f"  training (last epoch): {res.samples_per_s:,.0f} samples/s")
    print(f"  raw array read in the same batches: {raw:,.0f} samples/s")
    print(f"  training / raw read: {res.samples_per_s / raw:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--points", type=int, default=20_000)
    p.add_argument("--loop-points", type=int, default=300)
    p.add_argument("--runs", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    print("1. Box3D (Lebedev order 17, 110 directions)")
    bench_box3d(args.points, args.loop_points)
    print(f"2. training ({args.runs:,} demo runs, batch 128, MLP 48-128-128-24)")
    bench_training(args.runs, args.epochs)


if __name__ == "__main__":
    main()
