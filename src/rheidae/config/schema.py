"""Typed, frozen config sections of the three config files."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipekit.config import LoggingConfig, MonitoringConfig, ReportConfig
from pipekit.config import check as _check

SCHEMES = ("kendall_gal", "dwa", "gradnorm", "none")


@dataclass(frozen=True)
class InputConfig:
    raw_dir: str = ".data"
    pattern: str = "*.h5"
    storage_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OutputConfig:
    dir: str = ".pdata"


@dataclass(frozen=True)
class StabilityConfig:
    final_window: float = 0.5
    max_relative_spread: float = 0.05
    conservation_tolerance: float = 1e-3
    min_growth_factor: float = 10.0

    def __post_init__(self) -> None:
        _check(0 < self.final_window <= 1, "stability.final_window", "must be in (0, 1]")
        _check(self.max_relative_spread > 0, "stability.max_relative_spread", "must be > 0")
        _check(self.conservation_tolerance > 0, "stability.conservation_tolerance", "must be > 0")


@dataclass(frozen=True)
class Box3DConfig:
    lebedev_order: int = 17

    def __post_init__(self) -> None:
        _check(self.lebedev_order >= 3, "box3d.lebedev_order", "must be >= 3")


@dataclass(frozen=True)
class PreprocessConfig:
    input: InputConfig
    output: OutputConfig
    stability: StabilityConfig
    box3d: Box3DConfig
    logging: LoggingConfig


# ---- model.yaml


@dataclass(frozen=True)
class DataConfig:
    path: str = ".pdata/preprocessed_all.h5"
    target_scale: float = 1e-33
    val_frac: float = 0.1
    test_frac: float = 0.1
    batch_size: int = 256
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.target_scale > 0, "data.target_scale", "must be > 0")
        ok = 0 < self.val_frac < 1 and 0 < self.test_frac < 1 and self.val_frac + self.test_frac < 1
        _check(
            ok, "data.val_frac", "val_frac and test_frac must be in (0, 1) and leave a train share"
        )
        _check(self.batch_size > 0, "data.batch_size", "must be > 0")
        _check(self.num_workers >= 0, "data.num_workers", "must be >= 0")


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "residual_mlp"
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256, 256])
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check(
            bool(self.hidden_dims) and all(h > 0 for h in self.hidden_dims),
            "model.hidden_dims",
            "must be positive widths",
        )
        _check(0 <= self.dropout < 1, "model.dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-5

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optimizer.lr", "must be > 0")


@dataclass(frozen=True)
class SchedulerConfig:
    name: str = "cosine"
    min_lr: float = 1e-5

    def __post_init__(self) -> None:
        _check(self.name in ("cosine", "none"), "scheduler.name", "must be cosine or none")


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 100
    patience: int = 20
    device: str = "auto"
    output_dir: str = "results"

    def __post_init__(self) -> None:
        _check(self.epochs > 0, "training.epochs", "must be > 0")
        _check(self.patience > 0, "training.patience", "must be > 0")


@dataclass(frozen=True)
class LossConfig:
    number_scale: float = 1.0
    lepton_scale: float = 1.0
    causality_scale: float = 1.0


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig
    model: ModelConfig
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    training: TrainingConfig
    loss: LossConfig
    logging: LoggingConfig
    monitoring: MonitoringConfig
    report: ReportConfig


# ---- train_parms.yaml


@dataclass(frozen=True)
class WeightingConfig:
    scheme: str = "kendall_gal"
    dwa_temperature: float = 2.0
    gradnorm_alpha: float = 1.5
    gradnorm_lr: float = 0.025

    def __post_init__(self) -> None:
        _check(self.scheme in SCHEMES, "weighting.scheme", f"must be one of {SCHEMES}")
        _check(self.dwa_temperature > 0, "weighting.dwa_temperature", "must be > 0")


@dataclass(frozen=True)
class PCGradConfig:
    enabled: bool = False


@dataclass(frozen=True)
class TargetsConfig:
    predict_residual: bool = False


@dataclass(frozen=True)
class ConstraintsConfig:
    number: bool = True
    lepton: bool = True
    causality: bool = True


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 10
    dir: str = "checkpoints"

    def __post_init__(self) -> None:
        _check(self.every > 0, "checkpoint.every", "must be > 0")


@dataclass(frozen=True)
class TrainParms:
    weighting: WeightingConfig
    pcgrad: PCGradConfig
    targets: TargetsConfig
    constraints: ConstraintsConfig
    checkpoint: CheckpointConfig
