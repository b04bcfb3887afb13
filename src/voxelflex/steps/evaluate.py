"""Evaluate on a split: metrics overall and per temperature, per-domain r, strata, baselines,
optional permutation importance; JSON plus a short Markdown summary."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipekit.errors import InputDataError
from pipekit.uri import join_uri, open_uri
from voxelflex.config import Config, save_resolved_config
from voxelflex.data.loader import make_loader, to_device
from voxelflex.data.samples import read_master_samples
from voxelflex.data.sources import open_voxel_source
from voxelflex.data.voxels import CHANNELS
from voxelflex.monitoring import step_metrics
from voxelflex.paths import RunPaths
from voxelflex.steps.predict import (
    PREDICTION_COLUMNS,
    inference_stream,
    keep_predicted,
    load_for_inference,
    predict_table,
)
from voxelflex.training.checkpoint import LoadedModel
from voxelflex.training.metrics import mean_per_domain_pearson, regression_metrics

log = logging.getLogger(__name__)

RSA_BINS = [0.0, 0.05, 0.25, 0.5, 1.0001]
RSA_LABELS = [
    "buried (<0.05)",
    "intermediate (0.05-0.25)",
    "exposed (0.25-0.5)",
    "very exposed (>=0.5)",
]
PRED = {
    "model": "predicted_rmsf",
    "baseline_temperature_mean": "baseline_t",
    "baseline_resname_temperature_mean": "baseline_rt",
}


@dataclass(frozen=True)
class EvaluateResult:
    metrics: str
    summary: str
    predictions: str
    report: dict[str, Any]


def add_baselines(test: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """Training-split means: per temperature, and per resname at each temperature (falling back
    to the temperature mean); unseen temperatures are interpolated between training ones."""
    t_mean = train.groupby("raw_temp")["target_rmsf"].mean()
    out = test.copy()
    out["baseline_t"] = np.interp(out["raw_temp"], t_mean.index.to_numpy(), t_mean.to_numpy())
    rt = train.groupby(["resname", "raw_temp"])["target_rmsf"].mean().rename("baseline_rt")
    out = out.merge(rt, left_on=["resname", "raw_temp"], right_index=True, how="left")
    out["baseline_rt"] = out["baseline_rt"].fillna(out["baseline_t"])
    return out


def _metric_block(df: pd.DataFrame, pred: str) -> dict[str, Any]:
    block: dict[str, Any] = {"pooled": regression_metrics(df["target_rmsf"], df[pred])}
    per_t = {}
    for temp, g in df.groupby("raw_temp"):
        per_t[f"{temp:g}"] = {
            **regression_metrics(g["target_rmsf"], g[pred]),
            **mean_per_domain_pearson(g, pred),
        }
    block["per_temperature"] = per_t
    return block


def _strata(df: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    keys = {"resname": df["resname"]}
    if "dssp" in df and df["dssp"].notna().any():
        keys["dssp"] = df["dssp"].fillna("?")
    if "relative_accessibility" in df and df["relative_accessibility"].notna().any():
        keys["relative_accessibility"] = pd.cut(
            df["relative_accessibility"], RSA_BINS, labels=RSA_LABELS, right=False
        ).astype(str)
    for name, key in keys.items():
        out[name] = {
            str(k): regression_metrics(g["target_rmsf"], g["predicted_rmsf"])
            for k, g in df.groupby(key, sort=True)
        }
    return out


@torch.no_grad()
def permutation_importance(
    loaded: LoadedModel,
    device: torch.device,
    source,
    table: pd.DataFrame,
    cfg: Config,
    seed: int = 0,
) -> dict[str, float]:
    """RMSE increase when temperature, or one voxel channel, is shuffled across the batch."""
    stream = inference_stream(loaded, source, table, cfg, temp_col="raw_temp")
    gen = torch.Generator().manual_seed(seed)
    sq: dict[str, float] = {"base": 0.0, "temperature": 0.0, **{c: 0.0 for c in CHANNELS}}
    n = 0
    model = loaded.model.eval()
    for batch in make_loader(stream, 0):
        voxels, vi, temp, target = to_device(batch, device)
        sq["base"] += float(((model(voxels, temp, vi) - target) ** 2).sum())
        perm_t = temp[torch.randperm(len(temp), generator=gen).to(device)]
        sq["temperature"] += float(((model(voxels, perm_t, vi) - target) ** 2).sum())
        perm_r = torch.randperm(len(voxels), generator=gen).to(device)
        for c, name in enumerate(CHANNELS):
            shuffled = voxels.clone()
            shuffled[:, c] = voxels[perm_r, c]
            sq[name] += float(((model(shuffled, temp, vi) - target) ** 2).sum())
        n += len(target)
    base = math.sqrt(sq["base"] / max(n, 1))
    return {k: math.sqrt(v / max(n, 1)) - base for k, v in sq.items() if k != "base"}


def _clean(obj: Any) -> Any:
    """JSON has no NaN: undefined metrics become null."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


def _fmt(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


def headline_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers a dashboard shows: pooled model metrics, the per-temperature-mean
    baseline's RMSE beside them, and the mean per-domain r at each temperature."""
    pooled = report["model"]["pooled"]
    out = {k: pooled[k] for k in ("pearson", "spearman", "rmse", "mae", "r2")}
    out["baseline_temperature_mean_rmse"] = report["baseline_temperature_mean"]["pooled"]["rmse"]
    for t, m in report["model"]["per_temperature"].items():
        out[f"per_domain_pearson_{t}K"] = m["mean_per_domain_pearson"]
    return out


def markdown_summary(report: dict[str, Any]) -> str:
    lines = [
        f"# VoxelFlex evaluation: {report['split']} split",
        "",
        f"Model `{report['model_uri']}`: {report['n_samples']} samples, "
        f"{report['n_domains']} domains.",
        "",
        "Per-domain r is the mean over domains of Pearson r within each domain; pooled r mixes "
        "domains (and, overall, temperatures) and reads higher.",
        "",
        "| T (K) | model per-domain r | model pooled r | model RMSE (nm) | T-mean RMSE | "
        "resname×T-mean RMSE | resname×T-mean per-domain r |",
        "|---|---|---|---|---|---|---|",
    ]
    m, bt, br = (report[k]["per_temperature"] for k in PRED)
    for t in m:
        lines.append(
            f"| {t} | {_fmt(m[t]['mean_per_domain_pearson'])} | {_fmt(m[t]['pearson'])} | "
            f"{_fmt(m[t]['rmse'])} | {_fmt(bt[t]['rmse'])} | {_fmt(br[t]['rmse'])} | "
            f"{_fmt(br[t]['mean_per_domain_pearson'])} |"
        )
    pooled = {k: report[k]["pooled"] for k in PRED}
    lines += [
        "",
        "| overall | Pearson | Spearman | RMSE (nm) | MAE (nm) | R² |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in pooled.items():
        lines.append(
            f"| {k} | {_fmt(v['pearson'])} | {_fmt(v['spearman'])} | {_fmt(v['rmse'])} | "
            f"{_fmt(v['mae'])} | {_fmt(v['r2'])} |"
        )
    if "permutation_importance" in report:
        lines += [
            "",
            "Permutation importance (RMSE increase, nm): "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in report["permutation_importance"].items()),
        ]
    return "\n".join(lines) + "\n"


def run(
    cfg: Config, split: str = "test", model: str | None = None, permutation: bool = False
) -> EvaluateResult:
    paths = RunPaths.from_config(cfg)
    save_resolved_config(cfg, paths.resolved_config("evaluate"))
    master = read_master_samples(paths.master_samples)
    test = master.loc[master["split"] == split].reset_index(drop=True)
    if test.empty:
        raise InputDataError(f"split {split!r} has no samples in {paths.master_samples}")
    loaded, device = load_for_inference(cfg, model)
    source = open_voxel_source(cfg.input.voxel_file)
    with step_metrics(cfg, "evaluate") as metrics:
        test["predicted_rmsf"] = predict_table(
            loaded,
            device,
            source,
            test,
            cfg,
            temp_col="raw_temp",
            desc=f"evaluate {split}",
            metrics=metrics,
        )
    test = keep_predicted(test, f"the {split} split")
    df = add_baselines(test, master.loc[master["split"] == "train"])
    report: dict[str, Any] = {
        "split": split,
        "model_uri": model or paths.best_model,
        "n_samples": len(df),
        "n_domains": int(df["domain_id"].nunique()),
        **{name: _metric_block(df, col) for name, col in PRED.items()},
        "strata": _strata(df),
    }
    if permutation:
        report["permutation_importance"] = permutation_importance(loaded, device, source, test, cfg)
    m, b = report["model"]["pooled"], report["baseline_temperature_mean"]["pooled"]
    log.info(
        "evaluate %s: model r %.3f, RMSE %.4f nm (per-temperature-mean baseline RMSE %.4f nm)",
        split,
        m["pearson"],
        m["rmse"],
        b["rmse"],
    )
    report = _clean(report)  # after logging: JSON turns undefined metrics into null
    metrics_uri = paths.evaluation_metrics(split)
    summary_uri = join_uri(paths.metrics_dir, f"evaluation_summary_{split}.md")
    preds_uri = join_uri(paths.metrics_dir, f"predictions_{split}.csv")
    with open_uri(metrics_uri, "w") as fh:
        json.dump(report, fh, indent=2)
    with open_uri(summary_uri, "w") as fh:
        fh.write(markdown_summary(report))
    out = df.rename(columns={"raw_temp": "temperature"})
    with open_uri(preds_uri, "w") as fh:
        out[[*PREDICTION_COLUMNS, "target_rmsf"]].to_csv(fh, index=False, float_format="%.6g")
    log.info("evaluate: metrics -> %s, summary -> %s", metrics_uri, summary_uri)
    return EvaluateResult(metrics_uri, summary_uri, preds_uri, report)
