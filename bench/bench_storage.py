"""Storage layouts and loader speed on the same generated data, measured side by side.

Bytes per residue: the per-residue HDF5 (gzip, one dataset per residue), the packed mirror
(zarr v3, blosc-zstd over bit-packed rows), and the pre-batched float32 layout of an earlier
attempt (one (5, 21, 21, 21) float32 tensor per residue per temperature: computed, not
written). Loader speed (one process, training split, shuffled): the VoxelStream over the
per-residue HDF5, over the mirror on local disk, and over the mirror in S3 (moto's server in
another process on loopback), against the raw packed-read limit: every chunk of the mirror
read, decompressed and unpacked to uint8 in a plain loop, with no loader around it. The S3
server's request log counts the requests per chunk the loader makes (target: one GET each).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import s3_loopback
from pipekit.progress import set_progress
from training_data import training_index
from voxelflex.data import packed
from voxelflex.data.loader import StreamSettings, VoxelStream, make_loader, unpack_bits
from voxelflex.data.samples import SampleIndex, read_master_samples
from voxelflex.data.sources import open_voxel_source
from voxelflex.data.voxels import VOXEL_SHAPE
from voxelflex.paths import RunPaths
from voxelflex.steps import mirror

PREBATCHED_BYTES = int(np.prod(VOXEL_SHAPE)) * 4  # one float32 tensor per residue-temperature


def epoch_seconds(uri: str, index: SampleIndex, epoch: int, unpack: bool) -> float:
    """Seconds of one full training epoch of a fresh stream. With `unpack`, each batch's
    grids are also unpacked to uint8 on the CPU (what `to_device` does there; on a GPU that
    step moves to the device)."""
    stream = VoxelStream(open_voxel_source(uri), index, StreamSettings(256, 4, True, 2048, 0))
    stream.set_epoch(epoch)
    t0 = time.perf_counter()
    n = 0
    for batch in make_loader(stream, 0):
        if unpack:
            unpack_bits(batch["voxel_bits"])
        n += len(batch["row"])
    assert n == index.n_samples
    return time.perf_counter() - t0


def loader_rates(
    runs: dict[str, tuple[str, bool]], index: SampleIndex, repeats: int
) -> dict[str, tuple[float, float]]:
    """(residues/s, samples/s) of each named (uri, unpack), best of `repeats` epochs. The
    runs alternate, one epoch of each per round, so a slow spell of a shared machine falls
    on all of them alike rather than on whichever ran then."""
    best = dict.fromkeys(runs, float("inf"))
    for epoch in range(repeats):
        for name, (uri, unpack) in runs.items():
            best[name] = min(best[name], epoch_seconds(uri, index, epoch, unpack))
    return {k: (index.n_residues / t, index.n_samples / t) for k, t in best.items()}


def raw_packed_rate(uri: str, repeats: int) -> float:
    """Residues/s of reading, decompressing and unpacking every chunk in a plain loop (64
    rows at a time, as fast as numpy unpacks): the limit per core."""
    array = packed.open_chunks(uri)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(packed.n_chunks(array.n_rows, array.chunk_rows)):
            rows = array.read_chunk(i)
            for lo in range(0, len(rows), 64):
                packed.unpack(rows[lo : lo + 64])
        best = min(best, time.perf_counter() - t0)
    return array.n_rows / best


CHUNK_REQUEST = re.compile(r'"(GET|HEAD) /bench/voxels\.packed/voxels/c/')


def chunk_requests(log: Path, start: int) -> dict[str, int]:
    """GET and HEAD requests for the mirror's chunk objects logged after byte `start`."""
    with log.open() as fh:
        fh.seek(start)
        found = CHUNK_REQUEST.findall(fh.read())
    return {verb: found.count(verb) for verb in ("GET", "HEAD")}


def pin(pid: int, cores: list[int]) -> None:
    """Every thread of process `pid` onto `cores` (affinity is per thread on Linux, and a
    new thread inherits its creator's)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cores)


def sharded_mirror(src: str, dst: str, writers: int) -> float:
    """Wall time of the parallel mirror: plan, `writers` processes at once, a finishing run."""
    t0 = time.perf_counter()
    mirror.run(src, dst, plan_only=True)
    cli = [sys.executable, "-m", "voxelflex", "mirror", "--src", src, "--dst", dst, "-q"]
    procs = [
        subprocess.Popen([*cli, "--shard", f"{k}/{writers}"], stdout=subprocess.DEVNULL)
        for k in range(writers)
    ]
    if any(p.wait() for p in procs):
        raise SystemExit("a mirror writer failed")
    mirror.run(src, dst)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--domains", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    set_progress(False)
    log = Path(tempfile.mkdtemp()) / "s3-requests.log"
    server = s3_loopback.start("bench", str(log))
    with tempfile.TemporaryDirectory() as tmp:
        data, cfg, index = training_index(tmp, args.domains)
        n_all = data.n_residues
        samples_per_residue = len(read_master_samples(RunPaths.from_config(cfg).master_samples))
        samples_per_residue /= n_all

        local = str(Path(tmp, "voxels.packed"))
        t0 = time.perf_counter()
        mirror.run(str(data.voxel_file), local)
        mirror_s = time.perf_counter() - t0
        sharded_s = sharded_mirror(str(data.voxel_file), str(Path(tmp, "sharded.packed")), 2)
        remote = "s3://bench/voxels.packed"
        mirror.run(str(data.voxel_file), remote)

        h5_bytes = data.voxel_file.stat().st_size / n_all
        mirror_bytes = sum(p.stat().st_size for p in Path(local).rglob("*") if p.is_file()) / n_all
        pre_bytes = PREBATCHED_BYTES * samples_per_residue
        temps = f"{samples_per_residue:.1f} temperatures each"
        print(f"{n_all:,} residues ({temps}), {args.domains} domains")
        print(f"mirror written in {mirror_s:.1f} s ({n_all / mirror_s:,.0f} residues/s)")
        print(
            f"mirror by 2 writer processes (plan, 2 shards at once, finish): {sharded_s:.1f} s, "
            f"{mirror_s / sharded_s:.2f}x one process (efficiency {mirror_s / sharded_s / 2:.0%})"
        )
        print("bytes per residue:")
        print(f"  per-residue HDF5 (gzip)      {h5_bytes:10,.0f}")
        print(f"  packed mirror (zarr, zstd)   {mirror_bytes:10,.0f}")
        print(f"  pre-batched float32 .pt      {pre_bytes:10,.0f}  (computed)")
        print(
            f"  mirror is {pre_bytes / mirror_bytes:,.0f}x smaller than pre-batched "
            f"(target >= 500x) and {h5_bytes / mirror_bytes:.1f}x smaller than the HDF5"
        )

        raw = raw_packed_rate(local, args.repeats)
        before = log.stat().st_size
        rates = loader_rates(
            {
                "per-residue HDF5": (cfg.input.voxel_file, True),
                "mirror, local": (local, True),
                "mirror, s3 (loopback)": (remote, True),
                "mirror, local, unpacked on a GPU": (local, False),
            },
            index,
            args.repeats,
        )
        requests = chunk_requests(log, before)  # only the S3 epochs ask the server
        (h5_res, _), (loc_res, _), (s3_res, _) = (
            rates[k] for k in ("per-residue HDF5", "mirror, local", "mirror, s3 (loopback)")
        )
        print(
            f"loader, one process, training split ({index.n_residues:,} residues), "
            f"best of {args.repeats} epochs taken in turn:"
        )
        print(f"  raw packed read limit (read, decompress, unpack) {raw:10,.0f} residues/s")
        for name, (res, smp) in rates.items():
            print(f"  {name:<32} {res:10,.0f} residues/s {smp:10,.0f} samples/s")
        print("ratios:")
        print(f"  mirror local / per-residue HDF5 loader: {loc_res / h5_res:6.1f}x (target >= 25x)")
        print(f"  mirror local / raw packed-read limit:   {loc_res / raw:6.2f}x (target >= 0.5x)")
        print(
            f"  mirror s3 / mirror local:               {s3_res / loc_res:6.2f}x (target >= 0.7x)"
        )
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) >= 2:
            # the same two layouts with the server's work off the loader's core: on a
            # cluster the object store's CPU is not the pod's; here both share two cores
            pin(server.pid, cores[1:])
            pin(os.getpid(), cores[:1])
            apart = loader_rates(
                {"local": (local, True), "s3": (remote, True)}, index, args.repeats
            )
            pin(os.getpid(), cores)
            pin(server.pid, cores)
            print(
                "  mirror s3 / mirror local, the loader on one core and the S3 server on "
                f"the other: {apart['s3'][0] / apart['local'][0]:.2f}x "
                f"({apart['local'][0]:,.0f} and {apart['s3'][0]:,.0f} residues/s)"
            )
        per_chunk = (requests["GET"] + requests["HEAD"]) / max(requests["GET"], 1)
        print(
            f"S3 requests for chunks over {args.repeats} epochs: {requests['GET']} GET, "
            f"{requests['HEAD']} HEAD: {per_chunk:.2f} requests per chunk read (target 1)"
        )
    server.terminate()


if __name__ == "__main__":
    main()
