"""Data-parallel training speed: `voxelflex train` under torchrun with 1 and 2 CPU ranks on
the same data (a packed mirror of generated domains), measured side by side.

Each rank gets one core (OMP_NUM_THREADS=1), so 2 ranks use twice the compute of 1: the
ratio of their samples/s, divided by 2, is the scaling efficiency. Samples/s is the
training throughput over all ranks that `train` records per epoch (the first epoch, which
pays for imports and warm-up, is left out when there are more). The mirror's 1-vs-2 writer
speed-up is in bench_storage.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from training_data import training_index
from voxelflex.config import Config, config_to_dict
from voxelflex.paths import RunPaths
from voxelflex.steps import mirror


def train_ranks(cfg: Config, config: str, ranks: int, epochs: int, batch: int):
    """(samples/s over all ranks, wall seconds) of one torchrun launch, in its own run
    folder beside the preprocessed one (its temperature scaling copied in)."""
    base = Path(config).parent / f"ddp_{ranks}"
    run = RunPaths(str(base / cfg.output.run_name), cfg.data.processed_dir)
    Path(run.models_dir).mkdir(parents=True)
    shutil.copy(RunPaths.from_config(cfg).temp_scaling, run.temp_scaling)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={ranks}", "-m", "voxelflex", "train", "--config", config, "-q"]
    cmd += ["--set", f"output.base_dir={base}", "--set", f"training.num_epochs={epochs}"]
    cmd += ["--set", f"training.batch_size={batch}", "--set", "training.early_stopping_patience=99"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    wall = time.perf_counter() - start
    history = json.loads(Path(run.training_history).read_text())
    timed = history[1:] or history
    return sum(h["samples_per_s"] for h in timed) / len(timed), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--domains", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64, help="per rank")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, cfg, index = training_index(tmp, args.domains)
        store = str(Path(tmp) / "voxels.packed")
        mirror.run(str(data.voxel_file), store)
        # the run's resolved config, reading the mirror: every rank loads it
        values = config_to_dict(cfg)
        values["input"]["voxel_file"] = store
        values["logging"]["show_progress"] = False
        config = Path(tmp) / "bench.yaml"
        config.write_text(yaml.safe_dump(values))
        print(
            f"{index.n_samples:,} training samples ({index.n_residues:,} residues) in "
            f"{args.domains} domains; {args.epochs} epochs, batch {args.batch} per rank"
        )
        one, wall_one = train_ranks(cfg, str(config), 1, args.epochs, args.batch)
        two, wall_two = train_ranks(cfg, str(config), 2, args.epochs, args.batch)
    ratio = two / one
    print(f"1 rank : {one:8.0f} samples/s ({wall_one:.0f} s wall)")
    print(f"2 ranks: {two:8.0f} samples/s ({wall_two:.0f} s wall)")
    print(f"2 ranks vs 1: {ratio:.2f}x, scaling efficiency {ratio / 2:.0%}")


if __name__ == "__main__":
    main()
