"""The three config files users keep: `pre_process.yaml`, `model.yaml` (the experiment) and
`train_parms.yaml` (training controls), each merged over its packaged defaults; `--set
section.key=value` goes to the file that has the section."""

from __future__ import annotations

import typing
from dataclasses import dataclass

from pipekit.config import ConfigSchema, parse_overrides
from pipekit.errors import ConfigError
from rheidae.config.schema import ExperimentConfig, PreprocessConfig, TrainParms

# every relative path, in a file, a --set or a default, is read against where the command runs,
# as the lab's make targets use `.data`, `.pdata`, `results` and `checkpoints` from the project
# folder that holds `config/`
PREPROCESS = ConfigSchema(
    PreprocessConfig,
    "rheidae.config",
    ("input.raw_dir", "output.dir"),
    "pre_process.yaml",
    paths_from_cwd=True,
)
EXPERIMENT = ConfigSchema(
    ExperimentConfig,
    "rheidae.config",
    ("data.path", "training.output_dir"),
    "model.yaml",
    paths_from_cwd=True,
)
TRAIN_PARMS = ConfigSchema(
    TrainParms, "rheidae.config", ("checkpoint.dir",), "train_parms.yaml", paths_from_cwd=True
)


@dataclass(frozen=True)
class TrainSetup:
    experiment: ExperimentConfig
    parms: TrainParms


def _route(overrides: typing.Sequence[str], *schemas: ConfigSchema) -> list[list[str]]:
    """Each `section.key=value` to the schema whose file has the section."""
    out: list[list[str]] = [[] for _ in schemas]
    for pair in overrides:
        (section,) = parse_overrides([pair])
        owners = [i for i, s in enumerate(schemas) if section in s.defaults()]
        if not owners:
            known = sorted({k for s in schemas for k in s.defaults()})
            raise ConfigError(f"unknown config section '{section}' in --set; known: {known}")
        out[owners[0]].append(pair)
    return out


def load_preprocess(path: str | None, overrides: typing.Sequence[str] = ()) -> PreprocessConfig:
    return PREPROCESS.load(path, overrides)


def load_training(
    config: str | None,
    train_parms: str | None,
    overrides: typing.Sequence[str] = (),
    predict_residual: bool | None = None,
) -> TrainSetup:
    """model.yaml and train_parms.yaml with `--set`s; `--predict-residual` wins over both."""
    exp_over, parm_over = _route(overrides, EXPERIMENT, TRAIN_PARMS)
    if predict_residual:
        parm_over.append("targets.predict_residual=true")
    return TrainSetup(EXPERIMENT.load(config, exp_over), TRAIN_PARMS.load(train_parms, parm_over))
