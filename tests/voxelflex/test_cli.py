import subprocess
import sys
from pathlib import Path

import pytest

from voxelflex.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "voxelflex", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "training.batch_size=-1"], "config key 'training.batch_size': must be > 0"),
        (["--set", "training.bogus=1"], "unknown config key 'training.bogus'"),
        (["--set", "input.voxel_file=/nope.h5"], "'input.voxel_file' not found: /nope.h5"),
    ],
)
def test_user_errors_exit_nonzero_with_one_clear_line(demo_config: Path, args, message) -> None:
    proc = _run("preprocess", "--config", str(demo_config), "-q", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_data_command_writes_the_input_contract(tmp_path: Path, capsys) -> None:
    assert main(["demo-data", "--out", str(tmp_path / "d"), "--domains", "3", "--seed", "1"]) == 0
    names = {p.name for p in (tmp_path / "d").iterdir()}
    assert {
        "voxels.hdf5",
        "aggregated_rmsf.csv",
        "train_domains.txt",
        "val_domains.txt",
        "test_domains.txt",
        "config.yaml",
    } <= names
    assert "3 domains" in capsys.readouterr().out


def test_preprocess_cli_writes_its_outputs(demo_config: Path) -> None:
    from voxelflex.config import load_config
    from voxelflex.paths import RunPaths

    assert main(["preprocess", "--config", str(demo_config), "-q"]) == 0
    paths = RunPaths.from_config(load_config(str(demo_config)))
    for p in (
        paths.master_samples,
        paths.temp_scaling,
        paths.failed_domains,
        paths.log_file,
        paths.resolved_config("preprocess"),
    ):
        assert Path(p).is_file(), p
