"""`preprocessed_all.h5` as tensors: inputs (N, 48) and targets (N, 24) scaled by
`data.target_scale`, split by a seeded permutation into train/val/test. The file is small
(72 floats, 288 bytes a point), so it is read once and kept where training runs (on the GPU
when it fits); batches are slices of a permutation drawn per epoch from (seed, epoch), with
no per-sample work (a DataLoader over a TensorDataset indexes and collates each sample)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import h5py
import numpy as np
import torch

from pipekit.errors import InputDataError
from pipekit.uri import is_local, local_path, open_uri, uri_exists
from rheidae.config.schema import DataConfig


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # (n, 48) scaled: initial 24 | Box3D 24
    y: torch.Tensor  # (n, 24) scaled final moments
    growth: np.ndarray  # (n,)

    @property
    def box(self) -> torch.Tensor:
        return self.x[:, 24:]

    @property
    def initial(self) -> torch.Tensor:
        return self.x[:, :24]


def read_arrays(uri: str) -> dict[str, np.ndarray]:
    if not uri_exists(uri):
        raise InputDataError(f"data.path {uri} not found: run preprocess first")
    src = local_path(uri) if is_local(uri) else open_uri(uri, "rb")
    with h5py.File(src, "r") as f:
        missing = [k for k in ("input", "target") if k not in f]
        if missing:
            raise InputDataError(f"{uri} lacks dataset(s) {missing}: not a preprocessed file")
        x, y = f["input"][()], f["target"][()]
        growth = f["growth_rate"][()] if "growth_rate" in f else np.full(len(x), np.nan)
    if x.ndim != 2 or x.shape[1] != 48 or y.shape != (len(x), 24):
        raise InputDataError(
            f"{uri}: input {x.shape} and target {y.shape}, expected (N, 48), (N, 24)"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputDataError(f"{uri} holds non-finite inputs or targets")
    return {"x": x, "y": y, "growth": growth}


def splits(cfg: DataConfig) -> dict[str, Split]:
    a = read_arrays(cfg.path)
    n = len(a["x"])
    order = np.random.default_rng(cfg.seed).permutation(n)
    n_val, n_test = round(cfg.val_frac * n), round(cfg.test_frac * n)
    if min(n_val, n_test, n - n_val - n_test) < 1:
        raise InputDataError(f"{cfg.path}: {n} points are too few for train/val/test splits")
    parts = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    out = {}
    for name, idx in parts.items():
        x = torch.from_numpy(a["x"][idx] * cfg.target_scale).float()
        y = torch.from_numpy(a["y"][idx] * cfg.target_scale).float()
        out[name] = Split(x, y, a["growth"][idx])
    return out


DEVICE_SHARE = 0.5  # of the GPU's free memory the training set may take


def to_device(split: Split, device: torch.device) -> Split:
    """The split on `device` when it fits in DEVICE_SHARE of its free memory, else as is
    (batches then move one at a time)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if split.x.nbytes + split.y.nbytes > DEVICE_SHARE * free:
            return split
    return Split(split.x.to(device), split.y.to(device), split.growth)


def batches(
    split: Split, cfg: DataConfig, epoch: int, shuffle: bool, device: torch.device | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) batches of `cfg.batch_size`, in the order a seeded RandomSampler would draw
    them (one randperm from (seed, epoch)); on `device` (default: where the split is)."""
    n = len(split.x)
    if shuffle:
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g).to(split.x.device)
    else:
        order = torch.arange(n, device=split.x.device)
    target = device or split.x.device
    for i in range(0, n, cfg.batch_size):
        rows = order[i : i + cfg.batch_size]
        yield (
            split.x[rows].to(target, non_blocking=True),
            split.y[rows].to(target, non_blocking=True),
        )
