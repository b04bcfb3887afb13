"""The GPU kit: for each system, its demo trained through its own step commands (in this
process, so the GPU's peak memory can be read), measuring training samples/s, the share of
step time spent waiting for data, AMP on against off, and the peak GPU memory; then the
CUDA paths checked end to end: AMP training gives finite losses, a run resumed on the GPU
continues from its checkpoint, and VoxelFlex's bit-packed voxels unpack on the device as on
the CPU. Without CUDA it runs the same steps on the CPU and marks what needs CUDA as
skipped, so the kit is known to work before a GPU is lent.

    bench/gpu.sh [--out DIR] [--systems voxelflex belka ...]

Prints one table and writes `gpu_kit.json` (every figure, the device, the date) to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from pipekit.timing import peak_memory_gib, reset_peak_memory

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
Row = dict[str, Any]


@contextlib.contextmanager
def _cwd(folder: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def _call(main: Callable[[list[str]], int], *argv: str) -> None:
    code = main(list(argv))
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {code}")


def _measure(train: Callable[[bool], Path]) -> Row:
    """One training run with AMP on or off: samples/s and data wait of its last epoch (from
    the history it wrote), peak GPU memory, and whether every loss was finite."""
    out: Row = {}
    # both on the CPU too (where AMP is ignored): the kit's every path runs before a GPU does
    for amp in (True, False):
        reset_peak_memory(DEVICE)
        t0 = time.perf_counter()
        history = json.loads(train(amp).read_text())
        last = history[-1]
        losses = [v for h in history for k, v in h.items() if "loss" in k and isinstance(v, float)]
        key = "amp" if amp and CUDA else "fp32" if not amp else "amp_ignored_on_cpu"
        out[key] = {
            "samples_per_s": last.get("samples_per_s", last.get("pairs_per_s")),
            "data_wait_fraction": last.get("data_wait_fraction"),
            "peak_gpu_gib": peak_memory_gib(DEVICE),
            "epochs": len(history),
            "finite_losses": all(math.isfinite(v) for v in losses),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
    if "amp" in out and out["fp32"]["samples_per_s"]:
        out["amp_speedup"] = out["amp"]["samples_per_s"] / out["fp32"]["samples_per_s"]
    return out


def voxelflex(work: Path) -> Row:
    from voxelflex.cli import main

    cfg = work / "demo" / "config.yaml"
    _call(main, "demo-data", "--out", str(work / "demo"), "--domains", "12")
    _call(main, "preprocess", "--config", str(cfg), "-q")

    def train(amp: bool, *extra: str) -> Path:
        sets = [f"training.mixed_precision={str(amp).lower()}", "training.num_epochs=2"]
        sets += ["training.early_stopping_patience=5", f"output.run_name=kit_{amp}"]
        argv = ["train", "--config", str(cfg), "-q"]
        for s in sets:
            argv += ["--set", s]
        _call(main, *argv, *extra)  # the extra --set after: the later one wins
        return next((work / "demo").rglob(f"kit_{amp}/training_history.json"))

    row = _measure(train)
    row["resume"] = _resume(lambda: train(CUDA, "--resume", "--set", "training.num_epochs=3"))
    row["on_device_unpack"] = _unpack_check()
    return row


def _unpack_check() -> str:
    """The packed voxel bits unpacked by torch on the device equal numpy's on the CPU."""
    if not CUDA:
        return "skipped (no CUDA)"
    import numpy as np

    from voxelflex.data import packed
    from voxelflex.data.loader import unpack_bits

    grids = np.random.default_rng(0).integers(0, 2, (64, *packed.VOXEL_SHAPE), dtype=np.uint8)
    bits = packed.pack(grids)
    on_gpu = unpack_bits(torch.from_numpy(bits).to(DEVICE)).cpu().numpy()
    on_cpu = packed.unpack(bits)
    same = np.array_equal(on_gpu, on_cpu) and np.array_equal(on_gpu, grids)
    return "equal" if same else "DIFFERENT"


def _resume(train_more: Callable[[], Path]) -> str:
    """A run trained further with --resume continues its history (3 epochs after 2)."""
    history = json.loads(train_more().read_text())
    epochs = [h["epoch"] for h in history]
    return "continued" if len(epochs) == 3 and epochs[-1] in (2, 3) else f"epochs {epochs}"


ESM_RUN_KEY = "paths.run_name"


def esm2pairs(work: Path) -> Row:
    from esm2pairs.cli import main

    cfg = work / "demo" / "config.yaml"
    _call(main, "demo-data", "--out", str(work / "demo"))
    for step in ("preprocess", "embed", "pairs"):
        _call(main, step, "--config", str(cfg), "-q")

    def train(amp: bool, *extra: str) -> Path:
        argv = ["train", "--config", str(cfg), "-q"]
        sets = [f"training.mixed_precision={str(amp).lower()}", "training.num_epochs=2"]
        for s in [*sets, f"{ESM_RUN_KEY}=kit_{amp}"]:
            argv += ["--set", s]
        _call(main, *argv, *extra)
        return next((work / "demo").rglob(f"kit_{amp}/training_history.json"))

    row = _measure(train)
    row["resume"] = _resume(lambda: train(CUDA, "--resume", "--set", "training.num_epochs=3"))
    return row


def rheidae(work: Path) -> Row:
    from rheidae.cli import main

    project = work / "demo"
    _call(main, "demo-data", "--out", str(project), "--runs", "1500")
    with _cwd(project):
        _call(main, "preprocess", "--config", "config/pre_process.yaml", "-q")
        base = ["--config", "config/model.yaml", "--train-parms", "config/train_parms.yaml"]

        def train(amp: bool, *extra: str) -> Path:
            # fp32 by design (a small MLP whose physics terms need the precision): no AMP
            _call(main, "train", *base, "-q", "--set", "training.epochs=2", *extra)
            return project / "results" / "training_history.json"

        row = _measure(lambda amp: train(amp))
        row["resume"] = _resume(lambda: train(False, "--resume", "--set", "training.epochs=3"))
    row.pop("amp", None)
    row.pop("amp_speedup", None)
    row["amp_note"] = "fp32 by design (no AMP setting)"
    return row


def belka(work: Path) -> Row:
    from belka.cli import main
    from belka.demo import make_demo

    demo = make_demo(work / "demo", n_train=6000, n_test=600, n_extra=300)
    cfg = str(demo.config)
    for step in ("generate_parquet", "get_vocab", "make_dataset", "create_val_dataset"):
        _call(main, "--quiet", "--config", cfg, "--step", step)

    def train(amp: bool, *extra: str) -> Path:
        sets = [f"training.mixed_precision={str(amp).lower()}", "training.epochs=2"]
        folder = work / "demo" / f"mlm_{amp}"  # one model folder per setting
        argv = ["--quiet", "--config", cfg, "--step", "train_model", "--mode", "mlm"]
        for s in sets:
            argv += ["--set", s]
        _call(main, *argv, "--model_dir", str(folder), *extra)
        return folder / "training_history.json"

    row = _measure(train)
    row["resume"] = _resume(lambda: train(CUDA, "--resume", "--set", "training.epochs=3"))
    return row


SYSTEMS: dict[str, Callable[[Path], Row]] = {
    "voxelflex": voxelflex,
    "esm2pairs": esm2pairs,
    "rheidae": rheidae,
    "belka": belka,
}


def _fmt(x: Any, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="gpu_kit_out")
    ap.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0) if CUDA else f"CPU ({os.cpu_count()} cores)"
    report: Row = {
        "date": datetime.date.today().isoformat(),
        "device": device,
        "torch": torch.__version__,
        "systems": {},
    }
    failed = []
    for name in args.systems:
        t0 = time.perf_counter()
        try:
            report["systems"][name] = SYSTEMS[name](out / name) | {
                "wall_s": round(time.perf_counter() - t0, 1)
            }
        except Exception as exc:  # one system's failure is reported, the others run
            failed.append(name)
            report["systems"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        (out / "gpu_kit.json").write_text(json.dumps(report, indent=2))
    print(f"GPU kit on {device}, torch {torch.__version__}, {report['date']}")
    print(
        "system     | samples/s AMP | samples/s fp32 | AMP/fp32 | data wait | peak GiB "
        "| resume | unpack"
    )
    for name, row in report["systems"].items():
        if "error" in row:
            print(f"{name:<10} | FAILED: {row['error']}")
            continue
        amp, fp32 = row.get("amp", {}), row.get("fp32", {})
        wait = (amp or fp32).get("data_wait_fraction")
        print(
            f"{name:<10} | {_fmt(amp.get('samples_per_s')):>13} "
            f"| {_fmt(fp32.get('samples_per_s')):>14} "
            f"| {_fmt(row.get('amp_speedup'), '.2f'):>8} | {_fmt(wait, '.1%'):>9} "
            f"| {_fmt((amp or fp32).get('peak_gpu_gib'), '.2f'):>8} | {row['resume']} "
            f"| {row.get('on_device_unpack', '-')}"
        )
    print(f"-> {out / 'gpu_kit.json'}")
    bad = [
        n
        for n, r in report["systems"].items()
        if "error" not in r
        and (
            r["resume"] != "continued"
            or not all(r[k]["finite_losses"] for k in ("amp", "fp32") if k in r)
            or r.get("on_device_unpack") == "DIFFERENT"
        )
    ]
    return 1 if failed or bad else 0


if __name__ == "__main__":
    sys.exit(main())
