from pathlib import Path

import pytest
import yaml

from pipekit.errors import ConfigError
from voxelflex.config import load_config, parse_overrides, save_resolved_config


def test_defaults_load_into_frozen_dataclasses() -> None:
    cfg = load_config()
    assert cfg.model.architecture == "multipath_rmsf_net"
    assert cfg.training.batch_size == 128
    with pytest.raises(AttributeError):
        cfg.training.batch_size = 1  # type: ignore[misc]


def test_user_yaml_then_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(
        yaml.safe_dump(
            {"training": {"batch_size": 16, "learning_rate": 1}, "input": {"voxel_file": "v.h5"}}
        )
    )
    cfg = load_config(
        str(p), ["training.batch_size=64", "model.dropout_rate=0.1", "training.weight_decay=1e-4"]
    )
    assert cfg.training.weight_decay == 1e-4  # YAML reads 1e-4 as a string; still a float
    assert cfg.training.batch_size == 64
    assert cfg.training.learning_rate == 1.0 and isinstance(cfg.training.learning_rate, float)
    assert cfg.model.dropout_rate == 0.1
    # relative paths in a config file resolve against the file's folder
    assert cfg.input.voxel_file == str(tmp_path / "v.h5")


def test_uris_are_left_alone(tmp_path: Path) -> None:
    cfg = load_config(None, ["input.voxel_file=s3://bucket/v.h5"])
    assert cfg.input.voxel_file == "s3://bucket/v.h5"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.batchsize=3", "unknown config key 'training.batchsize'.*batch_size"),
        ("trainig.batch_size=3", "unknown config section 'trainig'"),
        ("training.batch_size=abc", "'training.batch_size': expected int"),
        ("training.learning_rate=fast", "'training.learning_rate': expected float"),
        ("training.batch_size=0", "'training.batch_size': must be > 0"),
        ("training.mixed_precision=3", "'training.mixed_precision': expected bool"),
        ("model.architecture=resnet", "'model.architecture'.*not one of"),
        ("model.dropout_rate=1.5", "'model.dropout_rate'"),
        ("training.device=tpu", "'training.device'"),
        ("batch_size=3", "section.key=value"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))


def test_parse_overrides_types() -> None:
    assert parse_overrides(["a.b=1", "a.c=x", "a.d=[1, 2]", "a.e=null"]) == {
        "a": {"b": 1, "c": "x", "d": [1, 2], "e": None}
    }


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, ["training.batch_size=7"])
    out = tmp_path / "resolved.yaml"
    save_resolved_config(cfg, str(out))
    assert load_config(str(out)) == cfg


def test_config_loads_from_a_uri(demo_cfg) -> None:
    """A distributed job's nodes read the config its pipeline step wrote to object storage."""
    save_resolved_config(demo_cfg, "memory://runs/r1/train_job_config.yaml")
    again = load_config("memory://runs/r1/train_job_config.yaml", ["training.num_epochs=7"])
    assert again.training.num_epochs == 7
    assert again.input.voxel_file == demo_cfg.input.voxel_file
    with pytest.raises(ConfigError, match="config file not found: memory://runs/r2/x.yaml"):
        load_config("memory://runs/r2/x.yaml")
