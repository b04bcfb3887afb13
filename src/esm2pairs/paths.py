"""Where each file of the pipeline lives. The master cache is canonical (shared by every
run of a virus and data version); sampling runs get their own folders, named by a suffix
(`_seed_42_isolates_1000`), for what depends on the sample."""

from __future__ import annotations

from dataclasses import dataclass

from esm2pairs.config import Config
from pipekit.uri import join_uri

CACHE_H5 = "master_esm2_embeddings.h5"
CACHE_INDEX = "master_esm2_embeddings.parquet"
FAILED_IDS = "failed_brc_fea_ids.csv"
SAMPLED_ISOLATES = "sampled_isolates.txt"
PROTEIN_FINAL = "protein_final.csv"
PAIR_FILES = {split: f"{split}_pairs.csv" for split in ("train", "val", "test")}
TRAINED_MODEL = "trained_model.pt"
# the Layout folder each step writes into (its log, and a local pipeline run's published files)
STEP_FOLDER = {
    "preprocess": "processed_dir",
    "embed": "output_dir",
    "pairs": "pairs_dir",
    "train": "run_dir",
    "evaluate": "run_dir",
    "visualize": "run_dir",
}


def run_suffix(cfg: Config) -> str:
    """Empty for the whole data set (canonical folders); else names the sample."""
    n = cfg.sampling.max_isolates_to_process
    return "" if n is None else f"_seed_{cfg.sampling.random_seed}_isolates_{n}"


@dataclass(frozen=True)
class Layout:
    raw_protein_file: str
    processed_dir: str
    input_file: str
    embeddings_dir: str
    output_dir: str
    pairs_dir: str
    run_dir: str

    @classmethod
    def from_config(cls, cfg: Config) -> Layout:
        p, v = cfg.paths, cfg.virus
        root = p.data_dir
        version = v.data_version
        sampled = version + run_suffix(cfg)
        processed = join_uri(root, "processed", v.virus_name, sampled)
        return cls(
            raw_protein_file=p.raw_protein_file
            or join_uri(root, "raw", v.virus_name, version, "protein_data.csv"),
            processed_dir=processed,
            input_file=p.input_file or join_uri(processed, PROTEIN_FINAL),
            embeddings_dir=p.embeddings_dir or join_uri(root, "embeddings", v.virus_name, version),
            output_dir=p.output_dir or join_uri(root, "embeddings", v.virus_name, sampled),
            pairs_dir=p.pairs_dir or join_uri(root, "datasets", v.virus_name, sampled),
            run_dir=p.run_dir or join_uri(root, "models", v.virus_name, sampled, p.run_name),
        )

    @property
    def cache_h5(self) -> str:
        return join_uri(self.embeddings_dir, CACHE_H5)

    @property
    def cache_index(self) -> str:
        return join_uri(self.embeddings_dir, CACHE_INDEX)

    @property
    def failed_ids(self) -> str:
        return join_uri(self.embeddings_dir, FAILED_IDS)

    @property
    def sampled_isolates(self) -> str:
        return join_uri(self.output_dir, SAMPLED_ISOLATES)

    def pairs(self, split: str) -> str:
        return join_uri(self.pairs_dir, PAIR_FILES[split])

    @property
    def trained_model(self) -> str:
        return join_uri(self.run_dir, TRAINED_MODEL)

    @property
    def latest_model(self) -> str:
        return join_uri(self.run_dir, "models", "latest_model.pt")

    @property
    def history(self) -> str:
        return join_uri(self.run_dir, "training_history.json")

    @property
    def metrics_dir(self) -> str:
        return join_uri(self.run_dir, "metrics")

    def predictions(self, split: str) -> str:
        return join_uri(self.metrics_dir, f"predictions_{split}.csv")

    def evaluation_metrics(self, split: str) -> str:
        return join_uri(self.metrics_dir, f"evaluation_metrics_{split}.json")

    @property
    def visualizations_dir(self) -> str:
        return join_uri(self.run_dir, "visualizations")

    def log_file(self, folder: str) -> str:
        return join_uri(folder, "logs", "esm2pairs.log")
