"""Predict per-residue RMSF at any temperature (K) for chosen domains or a split.

Temperatures are scaled with the checkpoint's training min/max; outside that range the model
extrapolates, which is allowed and warned about.

Under `torchrun` each rank predicts its shard of the rows (see `data.loader`) and writes its
own part (`<out>.part-RRRRR-of-WWWWW.csv`: row number and prediction); rank 0 then merges
the parts into the one output file, the same as a single process writes, and removes them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pipekit.device import amp_enabled, resolve_device
from pipekit.distributed import SINGLE, Dist, barrier, distributed
from pipekit.errors import InputDataError
from pipekit.monitoring import StepMetrics
from pipekit.uri import join_uri, open_uri, remove_uri, uri_exists
from voxelflex.config import Config, save_resolved_config
from voxelflex.data.loader import StreamSettings, VoxelStream, make_loader
from voxelflex.data.sample_join import parse_residue_keys
from voxelflex.data.samples import SampleIndex, read_master_samples
from voxelflex.data.sources import open_voxel_source
from voxelflex.data.temperature import TemperatureScaler
from voxelflex.data.voxels import VoxelSource
from voxelflex.monitoring import step_metrics
from voxelflex.paths import RunPaths
from voxelflex.training.checkpoint import LoadedModel, load_model
from voxelflex.training.loop import predict_batches

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["domain_id", "resid", "resname", "temperature", "predicted_rmsf"]


@dataclass(frozen=True)
class PredictResult:
    predictions: str
    n_predictions: int


def model_uri_or_default(cfg: Config, model: str | None) -> str:
    return model or RunPaths.from_config(cfg).best_model


def load_for_inference(
    cfg: Config, model: str | None, device: torch.device | None = None
) -> tuple[LoadedModel, torch.device]:
    device = device or resolve_device(cfg.training.device)
    return load_model(model_uri_or_default(cfg, model), device), device


def inference_stream(
    loaded: LoadedModel,
    source: VoxelSource,
    table: pd.DataFrame,
    cfg: Config,
    temp_col: str,
    d: Dist = SINGLE,
) -> VoxelStream:
    """An unshuffled stream over `table`'s rows (this rank's shard of them), temperatures
    scaled as the model was trained."""
    index = SampleIndex.from_table(table, loaded.scaler, temp_col=temp_col)
    settings = StreamSettings(
        cfg.prediction.batch_size,
        cfg.training.chunk_size,
        shuffle=False,
        rank=d.rank,
        world_size=d.world_size,
    )
    return VoxelStream(source, index, settings)


def predict_table(
    loaded: LoadedModel,
    device: torch.device,
    source: VoxelSource,
    table: pd.DataFrame,
    cfg: Config,
    temp_col: str = "temperature",
    desc: str = "predict",
    metrics: StepMetrics | None = None,
    d: Dist = SINGLE,
) -> np.ndarray:
    """Predicted RMSF for each row of `table` (domain_id, chain_id, resid_str, `temp_col`);
    NaN where a residue's voxels could not be read (or, data-parallel, another rank's row)."""
    stream = inference_stream(loaded, source, table, cfg, temp_col, d)
    start = time.perf_counter()
    rows, preds, _ = predict_batches(
        loaded.model,
        make_loader(stream, cfg.training.num_workers),
        device,
        amp=amp_enabled(device, cfg.training.mixed_precision),
        total_samples=stream.index.n_samples // d.world_size,
        desc=desc,
        on_batch=metrics.batch if metrics is not None else None,
    )
    if metrics is not None:
        metrics.pass_done({"samples_per_s": len(rows) / max(time.perf_counter() - start, 1e-9)})
    out = np.full(len(table), np.nan, dtype=np.float32)
    out[rows] = preds
    return out


def keep_predicted(table: pd.DataFrame, what: str) -> pd.DataFrame:
    """Rows with a prediction. A row without one (its grid could not be read, or the model
    gave a non-finite value) is left out with a warning; none left is an error, so a run that
    produced nothing never succeeds."""
    missing = ~np.isfinite(table["predicted_rmsf"].to_numpy(dtype=float))
    if missing.all():
        raise InputDataError(
            f"no prediction for {what}: none of its {len(table)} rows has a readable grid and "
            "a finite model output (see the warnings above for the residues skipped)"
        )
    if missing.any():
        log.warning(
            "%d of %d rows of %s have no prediction (unreadable grid or non-finite output) "
            "and are left out",
            int(missing.sum()),
            len(table),
            what,
        )
    return table.loc[~missing]


def check_temperatures(temperatures: list[float]) -> None:
    """Kelvin, finite and above zero: anything else is a one-line user error."""
    if not temperatures:
        raise InputDataError("give at least one --temperature (K)")
    for t in temperatures:
        if not math.isfinite(t) or t <= 0:
            raise InputDataError(
                f"--temperature must be a temperature in kelvin above 0, not {t:g}"
            )


def warn_outside_range(scaler: TemperatureScaler, temperatures: list[float]) -> None:
    outside = [t for t in temperatures if scaler.outside(np.array([t])).item()]
    if outside:
        log.warning(
            "temperature(s) %s K outside the training range %.0f-%.0f K: the model extrapolates",
            ", ".join(f"{t:g}" for t in outside),
            scaler.temp_min,
            scaler.temp_max,
        )


def residues_for(
    cfg: Config, source: VoxelSource, domains: list[str] | None, split: str | None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(residues to predict, the known samples of those domains or None)."""
    paths = RunPaths.from_config(cfg)
    master = read_master_samples(paths.master_samples) if uri_exists(paths.master_samples) else None
    if split is not None:
        if master is None:
            raise InputDataError(f"--split needs {paths.master_samples}: run preprocess first")
        known = master.loc[master["split"] == split]
        if known.empty:
            raise InputDataError(f"split {split!r} has no samples in {paths.master_samples}")
    else:
        assert domains is not None
        known = master.loc[master["domain_id"].isin(domains)] if master is not None else None
        in_master = set(known["domain_id"]) if known is not None else set()
        rest = [d for d in domains if d not in in_master]
        if rest:
            listed = source.list_residues(rest)
            missing = sorted(set(rest) - set(listed["domain_id"]))
            if missing:
                raise InputDataError(f"unknown domain(s) {', '.join(missing)}: not in {source.uri}")
            listed, _ = parse_residue_keys(listed)
            listed = listed.drop(columns="icode").assign(resname="UNK")
            known = pd.concat([known, listed]) if known is not None else listed
    cols = ["domain_id", "chain_id", "resid_str", "resid", "resname"]
    residues = known[cols].drop_duplicates(["domain_id", "chain_id", "resid_str"])
    has_target = known is not None and "target_rmsf" in known and known["target_rmsf"].notna().any()
    return residues.reset_index(drop=True), (known if has_target else None)


def _default_out(cfg: Config, scope: str, temperatures: list[float]) -> str:
    temps = "-".join(f"{t:g}K" for t in temperatures)
    return join_uri(RunPaths.from_config(cfg).metrics_dir, f"predictions_{scope}_{temps}.csv")


def part_uri(uri: str, rank: int, world_size: int) -> str:
    return f"{uri}.part-{rank:05d}-of-{world_size:05d}.csv"


def write_part(uri: str, d: Dist, predicted: np.ndarray) -> None:
    """This rank's predictions (the rows it predicted) beside the final output."""
    rows = np.flatnonzero(~np.isnan(predicted))
    part = pd.DataFrame({"row": rows, "predicted_rmsf": predicted[rows]})
    with open_uri(part_uri(uri, d.rank, d.world_size), "w") as fh:
        part.to_csv(fh, index=False, float_format="%.9g")


def merge_parts(uri: str, world_size: int, n_rows: int) -> np.ndarray:
    """The predictions of all ranks' parts, by row (NaN where no rank could read a residue);
    the parts are removed once read. A missing part is an error naming it."""
    out = np.full(n_rows, np.nan, dtype=np.float32)
    parts = [part_uri(uri, r, world_size) for r in range(world_size)]
    for part in parts:
        if not uri_exists(part):
            raise InputDataError(f"prediction part {part} is missing: did a rank fail?")
        with open_uri(part) as fh:
            got = pd.read_csv(fh)
        out[got["row"].to_numpy()] = got["predicted_rmsf"].to_numpy(np.float32)
    for part in parts:
        remove_uri(part)
    return out


def run(
    cfg: Config,
    temperatures: list[float],
    domains: list[str] | None = None,
    split: str | None = None,
    model: str | None = None,
    out: str | None = None,
) -> PredictResult:
    if (domains is None) == (split is None):
        raise InputDataError("give either domains or a split to predict for")
    check_temperatures(temperatures)
    with distributed(cfg.training.device) as (d, device):
        return _run(cfg, temperatures, domains, split, model, out, d, device)


def _run(
    cfg: Config,
    temperatures: list[float],
    domains: list[str] | None,
    split: str | None,
    model: str | None,
    out: str | None,
    d: Dist,
    device: torch.device,
) -> PredictResult:
    if d.is_main:
        save_resolved_config(cfg, RunPaths.from_config(cfg).resolved_config("predict"))
    loaded, device = load_for_inference(cfg, model, device)
    warn_outside_range(loaded.scaler, temperatures)
    source = open_voxel_source(cfg.input.voxel_file)
    residues, known = residues_for(cfg, source, domains, split)
    table = residues.merge(pd.DataFrame({"temperature": temperatures}), how="cross")
    uri = out or _default_out(cfg, split or "domains", temperatures)
    with step_metrics(cfg, "predict", export=d.is_main) as metrics:
        predicted = predict_table(loaded, device, source, table, cfg, metrics=metrics, d=d)
    if d.active:
        write_part(uri, d, predicted)
        barrier(d)  # every part is written
        if not d.is_main:
            return PredictResult(uri, len(table))
        predicted = merge_parts(uri, d.world_size, len(table))
    table["predicted_rmsf"] = predicted
    table = keep_predicted(table, f"{split or ', '.join(domains or [])}")
    cols = list(PREDICTION_COLUMNS)
    if known is not None:
        targets = known[["domain_id", "chain_id", "resid_str", "raw_temp", "target_rmsf"]]
        table = table.merge(
            targets.rename(columns={"raw_temp": "temperature"}),
            on=["domain_id", "chain_id", "resid_str", "temperature"],
            how="left",
        )
        cols.append("target_rmsf")
    table = table.sort_values(["domain_id", "chain_id", "resid", "resid_str", "temperature"])
    with open_uri(uri, "w") as fh:
        table[cols].to_csv(fh, index=False, float_format="%.6g")
    log.info("predict: %d predictions -> %s", len(table), uri)
    return PredictResult(uri, len(table))
