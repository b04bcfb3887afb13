"""evaluate: the trained model on the held-out test split against Box3D alone: error per
component and overall, conservation violations of the predictions, errors by growth-rate
tercile. Writes `metrics/evaluation_metrics_<split>.json` and `metrics/predictions_<split>.csv`
(true, Box3D, predicted and initial moments, 24 each, in 1/ccm)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipekit.atomic import replacing_uri
from pipekit.checkpoint import load_checkpoint
from pipekit.cpus import use_cpu_limit
from pipekit.errors import InputDataError, PipelineError
from pipekit.stats import bootstrap_ci
from pipekit.uri import join_uri
from rheidae.config import TrainSetup
from rheidae.data.dataset import splits
from rheidae.moments import names, total_number, unflat, violations
from rheidae.paths import BEST_MODEL
from rheidae.steps.train import build, predict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    split: str
    report: dict[str, Any]
    predictions: str


def point_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """|error| of each of the 24 components relative to the point's total number (N, 24):
    the measure of the headline, the strata and the plots."""
    return np.abs(pred - true) / total_number(unflat(true))[:, None]


def _errors(pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """Absolute errors relative to each point's total number density (scale-free)."""
    rel = point_errors(pred, true)
    return {
        "mean_relative_error": float(rel.mean()),
        "rmse_relative": float(np.sqrt((rel**2).mean())),
        "per_component": dict(zip(names(), rel.mean(0).round(8).tolist(), strict=True)),
    }


def headline(report: dict[str, Any]) -> dict[str, float]:
    m, b = report["model"], report["box3d"]
    return {
        "model_mean_relative_error": m["mean_relative_error"],
        "box3d_mean_relative_error": b["mean_relative_error"],
        "improvement_over_box3d": report["improvement_over_box3d"],
        "improvement_ci95_low": report["improvement_over_box3d_ci95"][0],
        "improvement_ci95_high": report["improvement_over_box3d_ci95"][1],
        "model_max_conservation_violation": report["conservation"]["model_max"],
    }


def run(setup: TrainSetup, split: str = "test") -> EvalResult:
    exp = setup.experiment
    out_dir = exp.training.output_dir
    use_cpu_limit()  # evaluates on the CPU: its threads sized to the pod's limit, as training's
    ckpt = load_checkpoint(join_uri(out_dir, BEST_MODEL), hint="run train first")
    try:
        model = build(ckpt["model_spec"])
        model.load_state_dict(ckpt["model_state"])
        residual, scale = bool(ckpt["predict_residual"]), float(ckpt["target_scale"])
    except KeyError as exc:
        raise InputDataError(f"{BEST_MODEL} lacks {exc}: not a rheidae model") from None
    data = splits(exp.data)[split]
    model.eval()
    with torch.inference_mode():
        pred = predict(model, data.x, residual).double().numpy() / scale
    true, box, init = (t.double().numpy() / scale for t in (data.y, data.box, data.initial))
    if not np.isfinite(pred).all():
        raise PipelineError(f"the model's {split} predictions are not all finite")
    model_err, box_err = _errors(pred, true), _errors(box, true)
    # how sure the improvement is on this many points: a paired bootstrap over points
    per_model, per_box = point_errors(pred, true).mean(1), point_errors(box, true).mean(1)
    ci = bootstrap_ci(lambda m, b: b.mean() / m.mean(), per_model, per_box)
    viol_model = violations(unflat(pred), unflat(init)).max(-1)
    viol_box = violations(unflat(box), unflat(init)).max(-1)
    strata: dict[str, Any] = {}
    growth = data.growth
    if np.isfinite(growth).all():
        edges = np.quantile(growth, [0, 1 / 3, 2 / 3, 1])
        for i, label in enumerate(("low", "middle", "high")):
            sel = (growth >= edges[i]) & (growth <= edges[i + 1])
            strata[label] = {
                "growth_rate_range": [float(edges[i]), float(edges[i + 1])],
                "points": int(sel.sum()),
                "model_mean_relative_error": _errors(pred[sel], true[sel])["mean_relative_error"],
                "box3d_mean_relative_error": _errors(box[sel], true[sel])["mean_relative_error"],
            }
    report = {
        "split": split,
        "points": len(true),
        "predict_residual": residual,
        "model": model_err,
        "box3d": box_err,
        "no_change": _errors(init, true),  # the initial moments as the answer
        "improvement_over_box3d": box_err["mean_relative_error"] / model_err["mean_relative_error"],
        "improvement_over_box3d_ci95": list(ci),
        "conservation": {
            "model_max": float(viol_model.max()),
            "model_mean": float(viol_model.mean()),
            "box3d_max": float(viol_box.max()),
        },
        "growth_rate_strata": strata,
    }
    if not all(math.isfinite(v) for v in headline(report).values()):
        raise PipelineError(f"evaluation on {split} is not finite: {headline(report)}")
    metrics_dir = join_uri(out_dir, "metrics")
    with replacing_uri(join_uri(metrics_dir, f"evaluation_metrics_{split}.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    cols = names()
    table = pd.concat(
        [
            pd.DataFrame(true, columns=[f"true_{c}" for c in cols]),
            pd.DataFrame(box, columns=[f"box3d_{c}" for c in cols]),
            pd.DataFrame(pred, columns=[f"pred_{c}" for c in cols]),
            pd.DataFrame(init, columns=[f"init_{c}" for c in cols]),
        ],
        axis=1,
    ).assign(growth_rate=growth)
    preds = join_uri(metrics_dir, f"predictions_{split}.csv")
    with replacing_uri(preds, "w") as fh:
        table.to_csv(fh, index=False, float_format="%.6e")
    log.info(
        "%s: model %.3e vs Box3D %.3e mean relative error (%.2fx better, 95%% CI %.2f-%.2f)",
        split,
        model_err["mean_relative_error"],
        box_err["mean_relative_error"],
        report["improvement_over_box3d"],
        *ci,
    )
    return EvalResult(split, report, preds)
