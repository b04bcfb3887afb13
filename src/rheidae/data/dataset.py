"""`preprocessed_all.h5` as tensors: inputs (N, 48) and targets (N, 24) scaled by
`data.target_scale`, split by a seeded permutation into train/val/test. The file is small
(72 floats a point), so it is read once; the loader shuffles per epoch from (seed, epoch)."""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

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


def loader(split: Split, cfg: DataConfig, epoch: int, shuffle: bool, workers: int) -> DataLoader:
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    return DataLoader(
        TensorDataset(split.x, split.y),
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        generator=g,
        num_workers=workers,
    )
