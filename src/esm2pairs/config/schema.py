"""Typed, frozen config sections. Each `__post_init__` checks ranges and names the bad key."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipekit.config import LoggingConfig, MonitoringConfig, ReportConfig
from pipekit.config import check as _check

POOLINGS = ("mean", "max", "cls", "attention")
PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class VirusConfig:
    virus_name: str = "flu_a"
    data_version: str = "July_2025"

    def __post_init__(self) -> None:
        for key in ("virus_name", "data_version"):
            value = getattr(self, key)
            _check(bool(value) and "/" not in value, f"virus.{key}", "must be a folder name")


@dataclass(frozen=True)
class SamplingConfig:
    random_seed: int = 42
    max_isolates_to_process: int | None = None

    def __post_init__(self) -> None:
        n = self.max_isolates_to_process
        _check(n is None or n > 0, "sampling.max_isolates_to_process", "must be > 0 or null")


@dataclass(frozen=True)
class PathsConfig:
    data_dir: str = "data"
    raw_protein_file: str | None = None
    input_file: str | None = None
    embeddings_dir: str | None = None
    output_dir: str | None = None
    pairs_dir: str | None = None
    run_dir: str | None = None
    run_name: str = "frozen_pair_classifier"
    storage_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(bool(self.run_name) and "/" not in self.run_name, "paths.run_name", "a folder name")


@dataclass(frozen=True)
class PreprocessConfig:
    esm2_max_residues: int = 1022

    def __post_init__(self) -> None:
        _check(self.esm2_max_residues > 0, "preprocess.esm2_max_residues", "must be > 0")


@dataclass(frozen=True)
class EmbeddingsConfig:
    model_ckpt: str = "facebook/esm2_t33_650M_UR50D"
    pooling: str = "mean"
    layer: str | int = "last"
    emb_storage_precision: str = "fp16"
    batch_size: int = 32
    max_tokens: int = 16384
    flush_every: int = 512
    shards: int = 1  # embed tasks side by side in the pipeline (one GPU each)
    device: str = "auto"
    mixed_precision: bool = True

    def __post_init__(self) -> None:
        _check(self.pooling in POOLINGS, "embeddings.pooling", f"must be one of {POOLINGS}")
        _check(
            self.layer in ("last", "second_last") or isinstance(self.layer, int),
            "embeddings.layer",
            "must be last, second_last or a layer number",
        )
        _check(
            self.emb_storage_precision in PRECISIONS,
            "embeddings.emb_storage_precision",
            f"must be one of {PRECISIONS}",
        )
        for key in ("batch_size", "max_tokens", "flush_every", "shards"):
            _check(getattr(self, key) > 0, f"embeddings.{key}", "must be > 0")


@dataclass(frozen=True)
class DatasetConfig:
    selected_functions: list[str] = field(default_factory=list)
    train_frac: float = 0.8
    val_frac: float = 0.1
    neg_to_pos_ratio: float = 1.0

    def __post_init__(self) -> None:
        ok = 0 < self.train_frac < 1 and 0 < self.val_frac < 1
        _check(
            ok and self.train_frac + self.val_frac < 1,
            "dataset.train_frac",
            ("train_frac and val_frac must be in (0, 1) and leave a test share"),
        )
        _check(self.neg_to_pos_ratio > 0, "dataset.neg_to_pos_ratio", "must be > 0")


@dataclass(frozen=True)
class TrainingConfig:
    architecture: str = "pair_mlp"
    hidden_dims: list[int] = field(default_factory=lambda: [256, 64])
    dropout: float = 0.2
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    num_epochs: int = 30
    patience: int = 5
    threshold: float = 0.5
    num_workers: int = 0
    device: str = "auto"
    mixed_precision: bool = True
    resume: bool = False

    def __post_init__(self) -> None:
        for key in ("batch_size", "num_epochs", "patience"):
            _check(getattr(self, key) > 0, f"training.{key}", "must be > 0")
        _check(self.learning_rate > 0, "training.learning_rate", "must be > 0")
        _check(0 <= self.dropout < 1, "training.dropout", "must be in [0, 1)")
        _check(0 < self.threshold < 1, "training.threshold", "must be in (0, 1)")
        _check(self.num_workers >= 0, "training.num_workers", "must be >= 0")
        _check(all(d > 0 for d in self.hidden_dims), "training.hidden_dims", "must be > 0")


@dataclass(frozen=True)
class Config:
    virus: VirusConfig
    sampling: SamplingConfig
    paths: PathsConfig
    preprocess: PreprocessConfig
    embeddings: EmbeddingsConfig
    dataset: DatasetConfig
    training: TrainingConfig
    logging: LoggingConfig
    monitoring: MonitoringConfig
    report: ReportConfig
