"""The generated data both loader benchmarks measure on: demo domains, preprocessed."""

from __future__ import annotations

from voxelflex.config import Config, load_config
from voxelflex.data.demo import DemoDataset
from voxelflex.data.samples import SampleIndex, read_master_samples
from voxelflex.data.temperature import TemperatureScaler
from voxelflex.paths import RunPaths
from voxelflex.steps import preprocess
from voxelflex.steps.demo_data import make_demo_dataset


def training_index(folder: str, n_domains: int) -> tuple[DemoDataset, Config, SampleIndex]:
    """Demo data in `folder`, preprocessed; the training split's sample index."""
    data = make_demo_dataset(folder, n_domains=n_domains, seed=1)
    cfg = load_config(str(data.config))
    preprocess.run(cfg)
    table = read_master_samples(RunPaths.from_config(cfg).master_samples, ("train",))
    return data, cfg, SampleIndex.from_table(table, TemperatureScaler(320, 450))
