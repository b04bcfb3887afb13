"""Typed, frozen config sections. Each `__post_init__` checks ranges and names the bad key."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipekit.config import LoggingConfig, MonitoringConfig
from pipekit.config import check as _check

ARCHITECTURES = ("multipath_rmsf_net", "densenet3d_regression", "dilated_resnet3d")
SCHEDULERS = ("cosine", "plateau", "none")


@dataclass(frozen=True)
class InputConfig:
    voxel_file: str | None = None
    aggregated_rmsf_file: str | None = None
    train_split_file: str | None = None
    val_split_file: str | None = None
    test_split_file: str | None = None
    max_domains: int | None = None
    # fsspec options per protocol, e.g. {"s3": {"endpoint_url": "http://minio:9000"}};
    # credentials are better left to the standard environment variables (AWS_* for s3)
    storage_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_domains is not None:
            _check(self.max_domains > 0, "input.max_domains", "must be > 0 or null")
        for protocol, opts in self.storage_options.items():
            _check(
                isinstance(opts, dict),
                f"input.storage_options.{protocol}",
                "must map option names to values, e.g. {endpoint_url: http://host:9000}",
            )


@dataclass(frozen=True)
class DataConfig:
    processed_dir: str = "processed"


@dataclass(frozen=True)
class OutputConfig:
    base_dir: str = "outputs"
    run_name: str = "voxelflex_run"

    def __post_init__(self) -> None:
        bad = not self.run_name or "/" in self.run_name or self.run_name in (".", "..")
        _check(not bad, "output.run_name", f"{self.run_name!r} is not a plain folder name")


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "multipath_rmsf_net"
    input_channels: int = 5
    base_filters: int = 32
    channel_growth_rate: float = 1.5
    num_residual_blocks: int = 3
    dropout_rate: float = 0.3
    densenet_growth_rate: int = 16
    densenet_block_layers: list[int] = field(default_factory=lambda: [3, 3])
    head_hidden: int = 64

    def __post_init__(self) -> None:
        _check(
            self.architecture in ARCHITECTURES,
            "model.architecture",
            f"{self.architecture!r} is not one of {', '.join(ARCHITECTURES)}",
        )
        _check(self.input_channels > 0, "model.input_channels", "must be > 0")
        _check(self.base_filters > 0, "model.base_filters", "must be > 0")
        _check(self.channel_growth_rate >= 1.0, "model.channel_growth_rate", "must be >= 1")
        _check(self.num_residual_blocks >= 1, "model.num_residual_blocks", "must be >= 1")
        _check(0.0 <= self.dropout_rate < 1.0, "model.dropout_rate", "must be in [0, 1)")
        _check(self.densenet_growth_rate > 0, "model.densenet_growth_rate", "must be > 0")
        _check(
            len(self.densenet_block_layers) > 0 and min(self.densenet_block_layers) > 0,
            "model.densenet_block_layers",
            "must be a non-empty list of positive layer counts",
        )
        _check(self.head_hidden > 0, "model.head_hidden", "must be > 0")


@dataclass(frozen=True)
class TrainingConfig:
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    num_epochs: int = 30
    chunk_size: int = 32
    shuffle_buffer_size: int = 4096
    num_workers: int = 2
    mixed_precision: bool = True
    gradient_clip_norm: float = 1.0
    scheduler: str = "cosine"
    warmup_epochs: int = 1
    early_stopping_patience: int = 5
    checkpoint_every: int = 5
    seed: int = 42
    device: str = "auto"
    max_batches_per_epoch: int | None = None

    def __post_init__(self) -> None:
        _check(self.batch_size > 0, "training.batch_size", "must be > 0")
        _check(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            "training.learning_rate",
            "must be a finite number > 0",
        )
        _check(self.weight_decay >= 0, "training.weight_decay", "must be >= 0")
        _check(self.num_epochs > 0, "training.num_epochs", "must be > 0")
        _check(self.chunk_size > 0, "training.chunk_size", "must be > 0")
        _check(self.shuffle_buffer_size >= 1, "training.shuffle_buffer_size", "must be >= 1")
        _check(self.num_workers >= 0, "training.num_workers", "must be >= 0")
        _check(self.gradient_clip_norm >= 0, "training.gradient_clip_norm", "must be >= 0")
        _check(
            self.scheduler in SCHEDULERS,
            "training.scheduler",
            f"{self.scheduler!r} is not one of {', '.join(SCHEDULERS)}",
        )
        _check(self.warmup_epochs >= 0, "training.warmup_epochs", "must be >= 0")
        _check(
            self.early_stopping_patience >= 1, "training.early_stopping_patience", "must be >= 1"
        )
        _check(self.checkpoint_every >= 0, "training.checkpoint_every", "must be >= 0")
        ok_device = self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        _check(ok_device, "training.device", f"{self.device!r}: use auto, cpu, cuda or cuda:N")
        if self.max_batches_per_epoch is not None:
            _check(self.max_batches_per_epoch > 0, "training.max_batches_per_epoch", "must be > 0")


@dataclass(frozen=True)
class PredictionConfig:
    batch_size: int = 256

    def __post_init__(self) -> None:
        _check(self.batch_size > 0, "prediction.batch_size", "must be > 0")


@dataclass(frozen=True)
class Config:
    input: InputConfig
    data: DataConfig
    output: OutputConfig
    model: ModelConfig
    training: TrainingConfig
    prediction: PredictionConfig
    logging: LoggingConfig
    monitoring: MonitoringConfig
