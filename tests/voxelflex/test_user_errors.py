"""Broken inputs as users have them: each is one line naming the file and what is wrong, and
a non-zero exit; an internal bug keeps its traceback."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tests.conftest import grid, write_h5, write_tiny_checkpoint
from voxelflex.cli import main


def _config(tmp_path: Path, voxel_file: Path, csv: Path | None = None) -> Path:
    """Domains d1 (train), d2 (val), d3 (test) over `voxel_file`, the RMSF rows of d1-d3."""
    if csv is None:
        csv = tmp_path / "r.csv"
        rows = [
            f"d{d},{r},ALA,{t},0.{d}{r}" for d in (1, 2, 3) for r in (1, 2, 3) for t in (320, 450)
        ]
        csv.write_text(
            "domain_id,resid,resname,temperature_feature,target_rmsf\n" + "\n".join(rows)
        )
    for i, split in enumerate(("train", "val", "test"), start=1):
        (tmp_path / f"{split}.txt").write_text(f"d{i}\n")
    cfg = {
        "input": {
            "voxel_file": str(voxel_file),
            "aggregated_rmsf_file": str(csv),
            **{f"{s}_split_file": str(tmp_path / f"{s}.txt") for s in ("train", "val", "test")},
        },
        "data": {"processed_dir": str(tmp_path / "proc")},
        "output": {"base_dir": str(tmp_path / "out"), "run_name": "r"},
        "training": {"num_workers": 0},
        "logging": {"show_progress": False},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _good_voxels(path: Path, bad_shape_domain: str | None = None) -> Path:
    layout = {}
    for d in ("d1", "d2", "d3"):
        shape_bad = d == bad_shape_domain
        layout[d] = {
            "A": {
                str(r): np.zeros((21, 21, 21, 4), bool) if shape_bad else grid(10 * int(d[1]) + r)
                for r in (1, 2, 3)
            }
        }
    return write_h5(path, layout)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("voxelflex: error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("domain_id,resid\nd1,1\n".encode("utf-16"), "UTF-16"),
        (bytes(range(256)) * 8, "binary"),
        (b"", "empty"),
    ],
)
def test_a_csv_that_is_not_utf8_text_is_one_line(tmp_path: Path, capsys, content, why) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_bytes(content)
    cfg = _config(tmp_path, _good_voxels(tmp_path / "v.h5"), csv)
    assert main(["preprocess", "--config", str(cfg), "-q"]) == 2
    line = _one_error_line(capsys)
    assert str(csv) in line and why in line


def test_an_hdf5_with_levels_swapped_is_one_line(tmp_path: Path, capsys) -> None:
    # file[domain][residue] = grid: the chain level is missing, datasets stand where groups go
    swapped = tmp_path / "v.h5"
    with h5py.File(swapped, "w") as f:
        for d in ("d1", "d2", "d3"):
            for r in (1, 2, 3):
                f.create_dataset(f"{d}/{r}", data=grid(r))
    assert main(["preprocess", "--config", str(_config(tmp_path, swapped)), "-q"]) == 2
    line = _one_error_line(capsys)
    assert str(swapped) in line and "/d1/1 is a dataset where the layout has a group" in line


def _corrupt_first_chunk(path: Path, dataset: str) -> None:
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(0)
    with open(path, "r+b") as fh:  # overwrite the compressed bytes in place
        fh.seek(info.byte_offset)
        fh.write(b"\x00garbage\xff" * (info.size // 9 + 1))


def test_a_corrupt_chunk_in_the_voxel_hdf5_is_one_line(tmp_path: Path, capsys) -> None:
    voxels = _good_voxels(tmp_path / "v.h5")
    _corrupt_first_chunk(voxels, "d3/A/2")
    cfg = _config(tmp_path, voxels)
    assert main(["preprocess", "--config", str(cfg), "-q"]) == 0  # metadata only: no grid read
    ckpt = write_tiny_checkpoint(tmp_path / "m.pt")
    argv = ["predict", "--config", str(cfg), "--model", ckpt, "--split", "test"]
    assert main([*argv, "--temperature", "320", "-q"]) == 2
    line = _one_error_line(capsys)
    assert str(voxels) in line and "d3/A/2" in line and "corrupt data" in line


def test_a_domain_of_wrong_shapes_predicts_nothing_and_fails(tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path, _good_voxels(tmp_path / "v.h5", bad_shape_domain="d3"))
    assert main(["preprocess", "--config", str(cfg), "-q"]) == 0
    ckpt = write_tiny_checkpoint(tmp_path / "m.pt")
    argv = ["predict", "--config", str(cfg), "--model", ckpt, "--domains", "d3"]
    assert main([*argv, "--temperature", "320", "-q"]) == 2
    assert "no prediction for d3" in _one_error_line(capsys)
    assert not list((tmp_path / "out").rglob("predictions_*.csv"))  # no all-NaN CSV
    # a healthy domain beside it: predicted; the unreadable one left out, with a warning
    argv = ["predict", "--config", str(cfg), "--model", ckpt, "--domains", "d2", "d3"]
    assert main([*argv, "--temperature", "320", "-q"]) == 0
    (csv,) = (tmp_path / "out").rglob("predictions_domains_320K.csv")
    lines = csv.read_text().splitlines()
    assert len(lines) == 4 and all(line.startswith("d2,") for line in lines[1:])


def test_an_internal_bug_keeps_its_traceback(tmp_path: Path, monkeypatch) -> None:
    from voxelflex.steps import preprocess

    def broken(cfg):
        raise ValueError("a bug, not the user's mistake")

    monkeypatch.setattr(preprocess, "run", broken)
    cfg = _config(tmp_path, _good_voxels(tmp_path / "v.h5"))
    with pytest.raises(ValueError, match="a bug"):
        main(["preprocess", "--config", str(cfg), "-q"])
