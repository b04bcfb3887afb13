"""Run under torchrun by tests: for each loader worker count, each rank streams its shard of
two epochs, and rank 0 writes what all ranks saw (gathered with all_gather_object) to a JSON
file, one entry per worker count (one launch for all: a launch costs seconds).

Usage: torchrun ... ddp_probe.py VOXEL_URI MASTER_SAMPLES WORKERS[,WORKERS...] OUT_JSON
"""

import json
import sys
from datetime import timedelta

import torch.distributed as dist

from pipekit.distributed import from_env
from voxelflex.data.loader import StreamSettings, VoxelStream, make_loader
from voxelflex.data.samples import SampleIndex, read_master_samples
from voxelflex.data.sources import open_voxel_source
from voxelflex.data.temperature import TemperatureScaler


def main(voxel_uri: str, master: str, worker_counts: list[int], out: str) -> None:
    d = from_env()
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    table = read_master_samples(master, ("train",))
    index = SampleIndex.from_table(table, TemperatureScaler(320, 450))
    settings = StreamSettings(32, 2, True, 64, 0, rank=d.rank, world_size=d.world_size)
    stream = VoxelStream(open_voxel_source(voxel_uri), index, settings)
    report = {
        str(workers): {"epochs": _epochs(stream, workers, d.world_size), "world": d.world_size}
        for workers in worker_counts
    }
    if d.is_main:
        with open(out, "w") as fh:
            json.dump({"n_samples": index.n_samples, "by_workers": report}, fh)
    dist.destroy_process_group()


def _epochs(stream: VoxelStream, workers: int, world_size: int) -> list:
    seen = []
    for epoch in (0, 1):
        stream.set_epoch(epoch)
        rows, batches = [], 0
        for batch in make_loader(stream, workers):
            rows += batch["row"].tolist()
            batches += 1
            # a collective per batch, as DDP's gradient all-reduce: unequal counts hang here
            dist.barrier()
        gathered: list = [None] * world_size
        dist.all_gather_object(gathered, {"rows": rows, "batches": batches})
        seen.append(gathered)
    return seen


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(w) for w in sys.argv[3].split(",")], sys.argv[4])
