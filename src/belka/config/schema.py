"""Typed, frozen sections of Belka's config (`config.yaml`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipekit.config import LoggingConfig, MonitoringConfig, ReportConfig
from pipekit.config import check as _check

MODES = ("mlm", "fps", "clf")


@dataclass(frozen=True)
class ModelConfig:
    depth: int = 32
    num_heads: int = 8
    num_layers: int = 4
    dropout_rate: float = 0.1
    activation: str = "gelu"
    max_length: int = 128
    vocab_size: int | None = None
    ff_dim: int = 128

    def __post_init__(self) -> None:
        _check(self.depth > 0, "model.depth", "must be > 0")
        _check(self.num_heads > 0, "model.num_heads", "must be > 0")
        _check(
            self.depth % self.num_heads == 0,
            "model.depth",
            f"{self.depth} is not divisible by model.num_heads={self.num_heads}",
        )
        _check(self.num_layers > 0, "model.num_layers", "must be > 0")
        _check(0 <= self.dropout_rate < 1, "model.dropout_rate", "must be in [0, 1)")
        _check(self.activation in ("gelu", "relu"), "model.activation", "must be gelu or relu")
        _check(self.max_length >= 8, "model.max_length", "must be >= 8")
        _check(self.max_length <= 65535, "model.max_length", "must be < 65536")
        _check(self.ff_dim > 0, "model.ff_dim", "must be > 0")
        if self.vocab_size is not None:
            _check(self.vocab_size >= 4, "model.vocab_size", "must be >= 4 (or null)")


@dataclass(frozen=True)
class TrainingConfig:
    batch_size: int = 2048
    buffer_size: int | None = None  # molecules; null: as many as buffer_bytes holds
    buffer_bytes: int = 1 << 29  # each loader worker's shuffle buffer, 512 MiB
    epochs: int = 1000
    patience: int = 20
    steps_per_epoch: int | None = 10_000
    validation_steps: int | None = 2000
    masking_rate: float = 0.15
    epsilon: float = 1e-7
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    mixed_precision: bool = True
    device: str = "auto"
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        _check(self.batch_size > 0, "training.batch_size", "must be > 0")
        _check(
            self.buffer_size is None or self.buffer_size > 0,
            "training.buffer_size",
            "must be > 0 or null",
        )
        _check(self.buffer_bytes > 0, "training.buffer_bytes", "must be > 0")
        _check(self.epochs > 0, "training.epochs", "must be > 0")
        _check(self.patience > 0, "training.patience", "must be > 0")
        for key in ("steps_per_epoch", "validation_steps"):
            value = getattr(self, key)
            _check(value is None or value > 0, f"training.{key}", "must be > 0 or null")
        _check(0 < self.masking_rate < 1, "training.masking_rate", "must be in (0, 1)")
        _check(self.epsilon > 0, "training.epsilon", "must be > 0")
        _check(self.learning_rate > 0, "training.learning_rate", "must be > 0")
        _check(self.checkpoint_every > 0, "training.checkpoint_every", "must be > 0")


@dataclass(frozen=True)
class DataConfig:
    root: str = "data/raw"
    working: str = "data/raw"
    vocab: str | None = None
    train_file: str = "train.parquet"
    test_file: str = "test.parquet"
    extra_file: str | None = "DNA_Labeled_Data.csv"
    storage_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ExtraConfig:
    smiles_column: str = "new_structure"
    label_column: str = "read_count"
    protein: str = "sEH"
    min_count: float = 1

    def __post_init__(self) -> None:
        from belka import PROTEINS

        _check(self.protein in PROTEINS, "extra.protein", f"must be one of {PROTEINS}")


@dataclass(frozen=True)
class ValidationConfig:
    heldout_block_fraction: float = 0.1
    # a text file in data.root: building blocks (SMILES, one per line) held out besides the
    # drawn fraction (a designed split, as the competition's non-shared library was)
    heldout_blocks_file: str | None = None
    shared_fraction: float = 0.01
    seed: int = 42

    def __post_init__(self) -> None:
        _check(
            0 <= self.heldout_block_fraction < 1,
            "validation.heldout_block_fraction",
            "must be in [0, 1)",
        )
        _check(0 <= self.shared_fraction < 1, "validation.shared_fraction", "must be in [0, 1)")


@dataclass(frozen=True)
class FeaturesConfig:
    ecfp_radius: int = 2
    ecfp_bits: int = 1024
    shard_size: int = 100_000
    rows_per_bucket: int = 2_000_000

    def __post_init__(self) -> None:
        _check(self.ecfp_radius >= 0, "features.ecfp_radius", "must be >= 0")
        _check(
            self.ecfp_bits >= 8 and self.ecfp_bits % 8 == 0,
            "features.ecfp_bits",
            "must be a multiple of 8 (the store packs bits)",
        )
        _check(self.shard_size > 0, "features.shard_size", "must be > 0")
        _check(self.rows_per_bucket > 0, "features.rows_per_bucket", "must be > 0")


@dataclass(frozen=True)
class SystemConfig:
    seed: int = 42
    n_workers: int = 8
    memory_limit: int | None = None  # bytes; null: the pod's (cgroup) limit, else the RAM

    def __post_init__(self) -> None:
        _check(self.n_workers >= 0, "system.n_workers", "must be >= 0")
        _check(
            self.memory_limit is None or self.memory_limit > 0,
            "system.memory_limit",
            "must be > 0 or null",
        )


@dataclass(frozen=True)
class EvaluationConfig:
    baseline_max_train: int = 200_000
    baseline_epochs: int = 20
    bootstrap_samples: int = 1000

    def __post_init__(self) -> None:
        _check(self.baseline_max_train > 0, "evaluation.baseline_max_train", "must be > 0")
        _check(self.baseline_epochs > 0, "evaluation.baseline_epochs", "must be > 0")
        _check(self.bootstrap_samples >= 100, "evaluation.bootstrap_samples", "must be >= 100")


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    training: TrainingConfig
    data: DataConfig
    extra: ExtraConfig
    validation: ValidationConfig
    features: FeaturesConfig
    system: SystemConfig
    evaluation: EvaluationConfig
    logging: LoggingConfig
    monitoring: MonitoringConfig
    report: ReportConfig
