"""Component glue: artifact URIs -> a validated Config, small-file staging, metrics."""

from __future__ import annotations

import math
from pathlib import Path

import fsspec
import pytest
from kfp.dsl import Model
from kfp.dsl.types import artifact_types as kfp_dsl_types

from pipekit.errors import ConfigError
from voxelflex import kfp_io
from voxelflex.paths import RunPaths
from voxelflex.pipeline_run import pipeline_arguments


class Recorder:
    def __init__(self) -> None:
        self.logged: dict[str, float] = {}

    def log_metric(self, metric: str, value: float) -> None:
        self.logged[metric] = value


def test_component_config_places_outputs_in_the_artifact(tmp_path: Path) -> None:
    run_dir, meta = tmp_path / "train" / "model", tmp_path / "prep" / "metadata"
    cfg = kfp_io.component_config(
        # pipeline parameters travel as protobuf Structs: ints arrive as floats
        {"model": {"base_filters": 8.0}, "training": {"num_workers": 0.0}},
        run_dir=str(run_dir),
        processed_dir=str(meta),
        overrides={"input.voxel_file": "s3://bucket/voxels.hdf5", "training.batch_size": 16},
    )
    paths = RunPaths.from_config(cfg)
    assert paths.run_dir == str(run_dir)
    assert paths.master_samples == str(meta / "master_samples.parquet")
    assert cfg.model.base_filters == 8 and isinstance(cfg.model.base_filters, int)
    assert cfg.training.batch_size == 16 and cfg.training.num_workers == 0
    assert cfg.input.voxel_file == "s3://bucket/voxels.hdf5"


def test_location_prefers_the_backends_local_path(tmp_path: Path, monkeypatch) -> None:
    # A cluster launcher maps minio://bucket/key to /minio/bucket/key and uploads from there;
    # where that folder exists the step writes locally, otherwise through the URI.
    remote = Model(uri="minio://mlpipeline/v2/artifacts/run/train/model")
    assert remote.path == "/minio/mlpipeline/v2/artifacts/run/train/model"
    assert kfp_io.location(remote) == "s3://mlpipeline/v2/artifacts/run/train/model"
    monkeypatch.setattr(kfp_dsl_types, "_MINIO_LOCAL_MOUNT_PREFIX", f"{tmp_path}/minio/")
    (tmp_path / "minio" / "mlpipeline" / "v2" / "artifacts" / "run" / "train").mkdir(parents=True)
    assert kfp_io.location(remote) == f"{tmp_path}/minio/mlpipeline/v2/artifacts/run/train/model"
    local = Model(uri=str(tmp_path / "x" / "model"))
    assert kfp_io.location(local) == str(tmp_path / "x" / "model")  # kfp.local: path == uri
    assert kfp_io.location("minio://b/k") == "s3://b/k"


def test_component_config_on_a_minio_artifact() -> None:
    cfg = kfp_io.component_config(
        {"logging": {"show_progress": False}}, run_dir="minio://mlpipeline/v2/artifacts/run/model"
    )
    assert RunPaths.from_config(cfg).best_model == (
        "s3://mlpipeline/v2/artifacts/run/model/models/best_model.pt"
    )
    assert kfp_io.best_model("minio://b/k/model/") == "s3://b/k/model/models/best_model.pt"
    assert kfp_io.fsspec_uri("gs://b/k") == "gs://b/k"


@pytest.mark.parametrize("section", ["input", "output", "data"])
def test_settings_may_not_move_inputs_or_outputs(section: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=section):
        kfp_io.component_config({section: {}}, run_dir=str(tmp_path))


def test_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="training.batch_sise"):
        kfp_io.component_config({"training": {"batch_sise": 3}}, run_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="model.base_filters"):
        kfp_io.component_config({"model": {"base_filters": 8.5}}, run_dir=str(tmp_path))


@pytest.mark.parametrize("root", ["local", "memory"])
def test_copy_files_between_artifacts(root: str, tmp_path: Path) -> None:
    base = str(tmp_path) if root == "local" else "memory://kfpio"
    src, dst = f"{base}/model", f"{base}/figures"
    with fsspec.open(f"{src}/models/temp_scaling_params.json", "w") as fh:
        fh.write('{"min": 320, "max": 450}')
    copied = kfp_io.copy_files(src, dst, ["models/temp_scaling_params.json", "absent.json"])
    assert copied == ["models/temp_scaling_params.json"]
    with fsspec.open(f"{dst}/models/temp_scaling_params.json", "r") as fh:
        assert fh.read() == '{"min": 320, "max": 450}'
    kfp_io.copy_uri(f"{dst}/models/temp_scaling_params.json", f"{base}/report")
    with fsspec.open(f"{base}/report", "r") as fh:
        assert "320" in fh.read()


def test_log_metrics_skips_undefined_values() -> None:
    rec = Recorder()
    logged = kfp_io.log_metrics(
        rec, {"pearson": 0.9, "epochs": 3, "r_const": math.nan, "flag": True, "name": "x"}
    )
    assert rec.logged == logged == {"pearson": 0.9, "epochs": 3.0}


def test_pipeline_arguments_from_a_config(demo_cfg) -> None:
    args = pipeline_arguments(demo_cfg, temperatures=[310, 335.5], split="val")
    assert args["voxel_file"] == demo_cfg.input.voxel_file
    assert args["max_domains"] == 0  # null: every domain
    assert args["architecture"] == demo_cfg.model.architecture
    assert args["num_epochs"] == demo_cfg.training.num_epochs
    assert args["predict_temperatures"] == [310.0, 335.5] and args["eval_split"] == "val"
    settings = args["settings"]
    assert set(settings) == {"model", "training", "prediction", "logging", "monitoring"}
    assert "architecture" not in settings["model"] and "batch_size" not in settings["training"]
    assert settings["model"]["base_filters"] == demo_cfg.model.base_filters
    # nulls cannot travel as KFP parameters; they are left to their defaults
    assert "max_batches_per_epoch" not in settings["training"]


def test_pipeline_arguments_need_inputs() -> None:
    from voxelflex.config import load_config

    with pytest.raises(ConfigError, match="input.voxel_file"):
        pipeline_arguments(load_config(None))


@pytest.mark.parametrize("where", ["local", "memory"])
def test_local_folder_uploads_when_the_artifact_is_remote(where: str, tmp_path: Path) -> None:
    target = str(tmp_path / "art") if where == "local" else "memory://kfpio-lf/art"
    with kfp_io.local_folder(target) as folder:
        assert Path(folder).is_dir()
        (Path(folder) / "voxels.hdf5").write_bytes(b"frames")
        (Path(folder) / "sub").mkdir()
        (Path(folder) / "sub" / "x.txt").write_text("x")
    with fsspec.open(f"{target}/voxels.hdf5", "rb") as fh:
        assert fh.read() == b"frames"
    with fsspec.open(f"{target}/sub/x.txt", "r") as fh:
        assert fh.read() == "x"


def test_fetch_folder_brings_a_remote_writers_files_to_the_local_output(tmp_path: Path) -> None:
    """A TrainJob's nodes write the model by URI; the launcher uploads from the local path."""
    fs = fsspec.filesystem("memory")
    fs.pipe({"/job/run/models/best_model.pt": b"w", "/job/run/training_history.json": b"[]"})
    model = Model(uri=str(tmp_path / "task" / "model"))
    kfp_io.fetch_folder("memory://job/run", model)
    assert (tmp_path / "task" / "model" / "models" / "best_model.pt").read_bytes() == b"w"
    assert (tmp_path / "task" / "model" / "training_history.json").read_text() == "[]"
    kfp_io.fetch_folder(model.uri, model)  # already in place: nothing to copy onto itself
    assert (tmp_path / "task" / "model" / "training_history.json").read_text() == "[]"
