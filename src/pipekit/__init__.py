"""The lab's shared pipeline layer: URIs and storage, config, logging and progress, user
errors, metrics, checkpoints, DDP, the KFP glue and the pipeline commands. It knows no
science; each system (`voxelflex`, `esm2pairs`, ...) builds on it."""

__version__ = "0.1.0"
