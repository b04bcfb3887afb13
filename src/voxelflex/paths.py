"""Where each contract output of a run lives: `outputs/<run_name>/...` (may be a URI)."""

from __future__ import annotations

from dataclasses import dataclass

from pipekit.uri import join_uri
from voxelflex.config import Config

TEMP_SCALING = "temp_scaling_params.json"


@dataclass(frozen=True)
class RunPaths:
    run_dir: str
    processed_dir: str

    @classmethod
    def from_config(cls, cfg: Config) -> RunPaths:
        return cls(
            run_dir=join_uri(cfg.output.base_dir, cfg.output.run_name),
            processed_dir=cfg.data.processed_dir,
        )

    @property
    def master_samples(self) -> str:
        return join_uri(self.processed_dir, "master_samples.parquet")

    @property
    def models_dir(self) -> str:
        return join_uri(self.run_dir, "models")

    @property
    def temp_scaling(self) -> str:
        """The run's copy, beside its models (what predict and evaluate read)."""
        return join_uri(self.models_dir, TEMP_SCALING)

    @property
    def processed_temp_scaling(self) -> str:
        """The scaling kept with the sample metadata it was fitted on: every run that trains
        on one preprocess (a sweep) starts from it."""
        return join_uri(self.processed_dir, TEMP_SCALING)

    @property
    def best_model(self) -> str:
        return join_uri(self.models_dir, "best_model.pt")

    @property
    def latest_model(self) -> str:
        return join_uri(self.models_dir, "latest_model.pt")

    def epoch_model(self, epoch: int) -> str:
        return join_uri(self.models_dir, f"checkpoint_epoch_{epoch}.pt")

    @property
    def failed_domains(self) -> str:
        return join_uri(self.run_dir, "failed_preprocess_domains.txt")

    @property
    def training_history(self) -> str:
        return join_uri(self.run_dir, "training_history.json")

    @property
    def log_file(self) -> str:
        return join_uri(self.run_dir, "logs", "voxelflex.log")

    @property
    def metrics_dir(self) -> str:
        return join_uri(self.run_dir, "metrics")

    def evaluation_metrics(self, split: str) -> str:
        return join_uri(self.metrics_dir, f"evaluation_metrics_{split}.json")

    @property
    def visualizations_dir(self) -> str:
        return join_uri(self.run_dir, "visualizations")

    def resolved_config(self, step: str) -> str:
        return join_uri(self.run_dir, f"resolved_config_{step}.yaml")
