"""Data-parallel training and prediction under real `torchrun` launches (CPU, gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voxelflex.cli import main
from voxelflex.config import load_config
from voxelflex.paths import RunPaths
from voxelflex.steps import preprocess

PROBE = Path(__file__).parent / "helpers" / "ddp_probe.py"
TIMEOUT = 240  # a hung collective fails the test instead of the suite


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "RANK", "WORLD"))}
    # gloo gives up on a missing peer after this long, so a hang becomes an error
    return {**env, "PIPEKIT_DIST_TIMEOUT_S": "90", "OMP_NUM_THREADS": "1"}


def torchrun(*args: str, nproc: int = 2, extra_env: dict[str, str] | None = None):
    """`torchrun --standalone --nproc_per_node N` on this interpreter."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", *args]
    return subprocess.run(
        cmd, env={**_env(), **(extra_env or {})}, capture_output=True, text=True, timeout=TIMEOUT
    )


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.mark.slow
def test_torchrun_ranks_see_each_sample_once_in_equal_steps(
    demo_cfg, packed_store, tmp_path: Path
) -> None:
    """Two ranks, streaming in the main process and through two loader workers each."""
    preprocess.run(demo_cfg)
    out = tmp_path / "seen.json"
    master = RunPaths.from_config(demo_cfg).master_samples
    _ok(torchrun("--no-python", sys.executable, str(PROBE), packed_store, master, "0,2", str(out)))
    report = json.loads(out.read_text())
    assert sorted(report["by_workers"]) == ["0", "2"]
    for seen in report["by_workers"].values():
        assert seen["world"] == 2
        for ranks in seen["epochs"]:
            assert ranks[0]["batches"] == ranks[1]["batches"] > 0
            rows = ranks[0]["rows"] + ranks[1]["rows"]
            assert sorted(rows) == list(range(report["n_samples"]))
        assert seen["epochs"][0][0]["rows"] != seen["epochs"][1][0]["rows"]  # reshuffled


def _train(config: Path, *extra: str) -> list[str]:
    return ["-m", "voxelflex", "train", "--config", str(config), "-q", *extra]


@pytest.mark.slow
def test_predict_shards_by_rank_and_merges_to_the_single_process_file(
    demo_config: Path, tmp_path: Path
) -> None:
    import pandas as pd

    from tests.conftest import write_tiny_checkpoint

    cfg = load_config(str(demo_config))
    preprocess.run(cfg)
    model = tmp_path / "model.pt"
    write_tiny_checkpoint(model)
    args = ["predict", "--config", str(demo_config), "-q", "--model", str(model)]
    args += ["--split", "test", "--temperature", "320", "--temperature", "400"]
    # the single-process file, from a plain process (this one); then two ranks under torchrun
    assert main([*args, "--out", str(tmp_path / "one.csv")]) == 0
    _ok(torchrun("-m", "voxelflex", *args, "--out", str(tmp_path / "two.csv"), nproc=2))
    outs = {name: pd.read_csv(tmp_path / f"{name}.csv") for name in ("one", "two")}
    one, two = outs["one"], outs["two"]
    assert len(two) == len(one) > 0 and list(two.columns) == list(one.columns)
    assert two.drop(columns="predicted_rmsf").equals(one.drop(columns="predicted_rmsf"))
    assert np.allclose(two["predicted_rmsf"], one["predicted_rmsf"], rtol=1e-5)
    assert not list(tmp_path.glob("*.part-*"))  # the parts were merged and removed


def test_merge_parts_fills_rows_by_number_and_names_a_missing_part(tmp_path: Path) -> None:
    from pipekit.distributed import Dist
    from pipekit.errors import InputDataError
    from voxelflex.steps.predict import merge_parts, part_uri, write_part

    uri = str(tmp_path / "p.csv")
    full = np.array([0.5, np.nan, 1.5, 2.5], dtype=np.float32)  # row 1 unreadable
    for rank, rows in ((0, [0, 3]), (1, [1, 2])):
        mine = np.full(4, np.nan, dtype=np.float32)
        mine[rows] = full[rows]
        write_part(uri, Dist(rank, 2), mine)
    assert np.array_equal(merge_parts(uri, 2, 4), full, equal_nan=True)
    assert not list(tmp_path.iterdir())
    write_part(uri, Dist(0, 2), full)
    with pytest.raises(InputDataError, match=r"p\.csv\.part-00001-of-00002\.csv is missing"):
        merge_parts(uri, 2, 4)
    assert part_uri(uri, 3, 8).endswith("p.csv.part-00003-of-00008.csv")
